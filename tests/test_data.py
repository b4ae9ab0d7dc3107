"""Audio loading, the ToneTwist layout, segment datasets and the data module."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from nablafx.data.audio import load_audio
from nablafx.data.datamodule import EffectDataModule
from nablafx.data.dataset import SegmentDataset
from nablafx.data.errors import DataError
from nablafx.data.tonetwist import find_pairs, parse_setting, split_setting

SR = 16000  # small files keep the tests fast


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.asarray(samples, dtype=np.float32), sample_rate, subtype="FLOAT")
    return path


def noise(seconds: float = 1.0, seed: int = 0, sample_rate: int = SR) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(round(seconds * sample_rate))


def make_tonetwist(
    root: Path,
    dry: str = "DRY",
    device: str = "Acme-Drive",
    settings: tuple[str, ...] = ("C030_R050", "C070_R050"),
    names: tuple[str, ...] = ("gtr", "bass"),
    seconds: float = 1.0,
) -> Path:
    """A tiny dataset in the ToneTwist layout; targets are tanh of the input, gain from knob C."""
    for split, split_names in (("trainval", names), ("test", ("solo",))):
        for seed, name in enumerate(split_names):
            x = noise(seconds, seed)
            write_wav(root / dry / split / f"{name}.input.wav", x)
            for setting in settings:
                gain = 1 + 10 * split_setting(setting)[0].get("C", 0.5)
                target = root / device / split / setting / f"{setting}.{name}.target.wav"
                write_wav(target, np.tanh(gain * x) / 2)
    return root


# -- setting names ----------------------------------------------------------------------


def test_parse_setting_reads_knob_letters_and_values():
    assert parse_setting("C030_R050_L060") == {"C": 0.3, "R": 0.5, "L": 0.6}
    assert parse_setting("G100") == {"G": 1.0}


@pytest.mark.parametrize("name", ["MNormal", "RAll", "DSi", "C030_MNormal"])
def test_word_settings_are_not_numeric(name):
    assert parse_setting(name) is None


def test_split_setting_separates_numeric_knobs_from_words():
    assert split_setting("C030_MNormal") == ({"C": 0.3}, ["MNormal"])


@pytest.mark.parametrize("name", ["C030_C040", "C150"])
def test_bad_setting_names_raise(name):
    with pytest.raises(DataError, match=name):
        split_setting(name)


# -- pairing ------------------------------------------------------------------------------


@pytest.mark.parametrize("dry", ["DRY", "DRY-with-markers"])
def test_find_pairs_matches_targets_to_dry_files(tmp_path, dry):
    root = make_tonetwist(tmp_path, dry=dry)
    pairs = find_pairs(root, "Acme-Drive", "trainval")
    assert [(p.setting, p.name) for p in pairs] == [
        ("C030_R050", "bass"), ("C030_R050", "gtr"), ("C070_R050", "bass"), ("C070_R050", "gtr")
    ]
    assert pairs[0].input_path == root / dry / "trainval" / "bass.input.wav"
    assert pairs[0].knobs == {"C": 0.3, "R": 0.5}
    assert len(find_pairs(root, "Acme-Drive", "test", settings=["C070_R050"])) == 1


def test_find_pairs_external_sources_layout(tmp_path):
    for name, split in (("train", "trainval"), ("val", "trainval"), ("test", "test")):
        write_wav(tmp_path / "DRY" / split / f"{name}.input.wav", noise())
        write_wav(tmp_path / "Amp" / split / "MNormal" / f"MNormal.{name}.target.wav", noise(seed=1))
    pairs = find_pairs(tmp_path, "Amp", "trainval")
    assert [p.name for p in pairs] == ["train", "val"]
    assert pairs[0].input_path.name == "train.input.wav" and pairs[0].knobs == {}
    assert find_pairs(tmp_path, "Amp", "test")[0].input_path.name == "test.input.wav"


def test_missing_root_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        find_pairs(tmp_path / "nowhere", "Acme-Drive", "trainval")


def test_missing_device_lists_available_devices(tmp_path):
    root = make_tonetwist(tmp_path)
    with pytest.raises(DataError, match="Acme-Fuzz.*available: Acme-Drive"):
        find_pairs(root, "Acme-Fuzz", "trainval")


def test_missing_dry_folder(tmp_path):
    write_wav(tmp_path / "Dev" / "trainval" / "X" / "X.a.target.wav", noise())
    with pytest.raises(DataError, match="no dry folder") as error:
        find_pairs(tmp_path, "Dev", "trainval")
    assert str(tmp_path) in str(error.value)


def test_no_pairs_says_what_was_searched(tmp_path):
    (tmp_path / "DRY" / "trainval").mkdir(parents=True)
    (tmp_path / "Dev" / "trainval" / "X").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no pairs found.*\.target\.wav.*\.input\.wav"):
        find_pairs(tmp_path, "Dev", "trainval")


def test_target_without_dry_file_is_named(tmp_path):
    root = make_tonetwist(tmp_path)
    write_wav(root / "Acme-Drive" / "trainval" / "C030_R050" / "C030_R050.keys.target.wav", noise())
    with pytest.raises(DataError, match=r"C030_R050\.keys\.target\.wav.*keys\.input\.wav"):
        find_pairs(root, "Acme-Drive", "trainval")


def test_unknown_setting_lists_available(tmp_path):
    root = make_tonetwist(tmp_path)
    with pytest.raises(DataError, match="C999.*available: C030_R050, C070_R050"):
        find_pairs(root, "Acme-Drive", "trainval", settings=["C999"])


# -- loading audio ------------------------------------------------------------------------


def test_resampling_44k1_to_48k_keeps_duration_and_pitch(tmp_path):
    t = np.arange(44100) / 44100
    path = write_wav(tmp_path / "sine.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), sample_rate=44100)
    with pytest.warns(UserWarning, match="sine.wav: resampling from 44100 Hz to 48000 Hz"):
        audio = load_audio(path, 48000)
    assert audio.shape == (1, 48000) and audio.dtype == torch.float32
    spectrum = torch.fft.rfft(audio[0]).abs()
    assert int(spectrum.argmax()) == 1000  # 1 Hz bins over one second


def _bad_file(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.wav"
    if kind == "garbage":
        path.write_bytes(b"this is not a wav file at all" * 10)
    elif kind == "stereo":
        write_wav(path, np.stack([noise(), noise(seed=1)], axis=1))
    elif kind == "silent":
        write_wav(path, np.zeros(SR))
    else:
        x = noise()
        x[123] = {"nan": np.nan, "inf": np.inf}[kind]
        write_wav(path, x)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("garbage", "not a readable audio file"),
        ("stereo", "(?s)2 channels.*sox"),
        ("nan", "sample 123 .* nan"),
        ("inf", "sample 123 .* inf"),
        ("silent", "silent"),
    ],
)
def test_bad_audio_files_raise_data_error_naming_the_file(tmp_path, kind, message):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(DataError, match=message) as error:
        load_audio(path, SR)
    assert f"{kind}.wav" in str(error.value) and "fix:" in str(error.value)


def test_missing_audio_file(tmp_path):
    with pytest.raises(DataError, match="ghost.wav: file not found"):
        load_audio(tmp_path / "ghost.wav", SR)


def test_data_error_survives_pickling():
    """DataLoader workers send errors to the main process pickled."""
    error = pickle.loads(pickle.dumps(DataError("too short", "a.wav", "record more")))
    assert str(error) == "a.wav: too short\n  fix: record more"


# -- segment datasets -----------------------------------------------------------------------


def _pair(folder: Path, seconds: float = 1.0, target_seconds: float | None = None, target_rate: int = SR):
    x = write_wav(folder / "in.wav", noise(seconds))
    y = write_wav(folder / "out.wav", noise(target_seconds or seconds, seed=1), sample_rate=target_rate)
    return x, y


def test_segment_counts_drop_the_remainder(tmp_path):
    x, y = _pair(tmp_path, seconds=1.1)  # 17600 samples
    assert len(SegmentDataset([(x, y)], SR, segment_length=4000)) == 4
    assert len(SegmentDataset([(x, y)], SR, segment_length=4000, hop_length=2000)) == 7
    assert len(SegmentDataset([(x, y)], SR, segment_length=4000, region=(0.0, 0.5))) == 2


def test_items_are_float32_segments_with_knob_vector(tmp_path):
    x, y = _pair(tmp_path)
    dataset = SegmentDataset([(x, y, [0.3, 0.7])], SR, segment_length=4000)
    x_seg, y_seg, knobs = dataset[1]
    assert x_seg.shape == y_seg.shape == (1, 4000) and x_seg.dtype == y_seg.dtype == torch.float32
    assert torch.equal(knobs, torch.tensor([0.3, 0.7]))
    assert SegmentDataset([(x, y)], SR, segment_length=4000)[0][2].shape == (0,)


def test_silent_segments_are_skipped_unless_asked(tmp_path):
    signal = noise()
    signal[: SR // 2] = 1e-5  # first half: not silent as a file, silent as segments
    x = write_wav(tmp_path / "in.wav", signal)
    y = write_wav(tmp_path / "out.wav", noise(seed=1))
    assert len(SegmentDataset([(x, y)], SR, segment_length=4000)) == 2
    assert len(SegmentDataset([(x, y)], SR, segment_length=4000, skip_silent=False)) == 4


def test_file_shorter_than_a_segment(tmp_path):
    x, y = _pair(tmp_path, seconds=0.1)
    with pytest.raises(DataError, match=r"in\.wav.*fewer than one segment of 4000"):
        SegmentDataset([(x, y)], SR, segment_length=4000)


def test_region_without_a_whole_segment(tmp_path):
    x, y = _pair(tmp_path)
    with pytest.warns(UserWarning, match="in.wav: its region 0.9-1"), \
            pytest.raises(DataError, match=r"in\.wav: no segments"):
        SegmentDataset([(x, y)], SR, segment_length=4000, region=(0.9, 1.0))


def test_length_mismatch_names_both_files_and_lengths(tmp_path):
    x, y = _pair(tmp_path, seconds=1.0, target_seconds=0.9)
    with pytest.raises(DataError, match=r"in\.wav and .*out\.wav.*16000 samples but target 14400"):
        SegmentDataset([(x, y)], SR, segment_length=4000)


def test_sample_rate_mismatch_between_input_and_target_is_an_error(tmp_path):
    """Input and target of one pair must share a rate; only both together are resampled."""
    x, y = _pair(tmp_path, target_rate=22050)
    with pytest.raises(DataError, match=r"in\.wav and .*out\.wav.*16000 Hz but target at 22050 Hz"):
        SegmentDataset([(x, y)], SR, segment_length=4000)


def test_pair_at_another_rate_is_resampled_to_the_model_rate(tmp_path):
    x = write_wav(tmp_path / "in.wav", noise(sample_rate=8000), sample_rate=8000)
    y = write_wav(tmp_path / "out.wav", noise(seed=1, sample_rate=8000), sample_rate=8000)
    with pytest.warns(UserWarning, match="resampling"):
        dataset = SegmentDataset([(x, y)], SR, segment_length=4000)
    assert len(dataset) == 4


# -- the data module --------------------------------------------------------------------------


def _knob_vectors(dataset: SegmentDataset) -> set[tuple[float, ...]]:
    return {tuple(round(value, 3) for value in knobs.tolist()) for _, _, knobs in dataset}


def _datamodule(root: Path, **overrides) -> EffectDataModule:
    args = dict(
        root=str(root), device="Acme-Drive", sample_rate=SR, segment_seconds=0.25,
        test_segment_seconds=0.5, val_fraction=0.25, batch_size=4, test_batch_size=2,
    )
    return EffectDataModule(**{**args, **overrides})


def test_datamodule_batches_shapes_and_knob_order(tmp_path):
    data = _datamodule(make_tonetwist(tmp_path), knobs=["R", "C"])
    assert data.num_knobs == 2 and data.knob_names == ["R", "C"] and data.sample_rate == SR
    data.setup("fit")
    x, y, knobs = next(iter(data.train_dataloader()))
    assert x.shape == y.shape == (4, 1, 4000) and knobs.shape == (4, 2)
    assert x.dtype == y.dtype == knobs.dtype == torch.float32
    assert _knob_vectors(data.train_dataset) == {(0.5, 0.3), (0.5, 0.7)}
    # 2 settings x 2 files x (3 segments in the first 75% of 1 s + 1 in the last 25%)
    assert len(data.train_dataset) == 12 and len(data.val_dataset) == 4
    data.setup("test")
    x, y, knobs = next(iter(data.test_dataloader()))
    assert x.shape == (2, 1, 8000) and knobs.shape == (2, 2)


def test_non_parametric_datamodule_has_empty_knobs(tmp_path):
    data = _datamodule(make_tonetwist(tmp_path), settings=["C030_R050"])
    assert data.num_knobs == 0 and data.dataset_name == "Acme-Drive-C030_R050"
    data.setup("fit")
    x, _, knobs = next(iter(data.val_dataloader()))
    assert knobs.shape == (x.shape[0], 0)


def test_train_and_validation_regions_do_not_overlap(tmp_path):
    ramp = np.linspace(0.01, 0.9, SR)  # every sample value marks its position in the file
    write_wav(tmp_path / "DRY" / "trainval" / "a.input.wav", ramp)
    write_wav(tmp_path / "DRY" / "test" / "a.input.wav", ramp)
    write_wav(tmp_path / "Acme-Drive" / "trainval" / "S" / "S.a.target.wav", ramp / 2)
    data = _datamodule(tmp_path, segment_seconds=0.05, val_fraction=0.2)
    data.setup("fit")
    train_values = torch.cat([x.flatten() for x, _, _ in data.train_dataset])
    val_values = torch.cat([x.flatten() for x, _, _ in data.val_dataset])
    assert len(data.train_dataset) == 16 and len(data.val_dataset) == 4
    assert train_values.max() < val_values.min()


def test_external_sources_keep_their_validation_file(tmp_path):
    for name, split, seconds in (("train", "trainval", 1.0), ("val", "trainval", 0.5), ("test", "test", 0.5)):
        write_wav(tmp_path / "DRY" / split / f"{name}.input.wav", noise(seconds))
        target = tmp_path / "Amp" / split / "MNormal" / f"MNormal.{name}.target.wav"
        write_wav(target, noise(seconds, seed=1))
    data = _datamodule(tmp_path, device="Amp")
    data.setup("fit")
    assert len(data.train_dataset) == 4 and len(data.val_dataset) == 2  # whole files, 0.25 s segments


def test_chosen_knob_missing_from_a_setting(tmp_path):
    data = _datamodule(make_tonetwist(tmp_path, settings=("C030", "MNormal")), knobs=["C"])
    with pytest.raises(DataError, match="setting MNormal has no numeric value for knob.* C") as error:
        data.setup("fit")
    assert "MNormal" in error.value.path


def test_settings_the_knobs_cannot_tell_apart(tmp_path):
    data = _datamodule(make_tonetwist(tmp_path, settings=("C030_R050", "C030_R070")), knobs=["C"])
    with pytest.raises(DataError, match=r"(?s)C030_R050 and C030_R070 get the same knob values.*\[R\]"):
        data.setup("fit")


def test_pairs_from_config_with_knob_values(tmp_path):
    for name in ("a", "b", "t"):
        write_wav(tmp_path / f"{name}.in.wav", noise())
        write_wav(tmp_path / f"{name}.out.wav", noise(seed=1))
    data = EffectDataModule(
        root=str(tmp_path),
        pairs={
            "train": [
                ["a.in.wav", "a.out.wav", {"G": 0.2, "T": 0.9}],  # knob values by name
                ["b.in.wav", "b.out.wav", [0.4, 0.1]],  # in the order of `knobs`
            ],
            "test": [["t.in.wav", "t.out.wav", [0.5, 0.5]]],
        },
        knobs=["G", "T"], sample_rate=SR, segment_seconds=0.25, test_segment_seconds=0.5, val_fraction=0.25,
        batch_size=2,
    )
    data.setup(None)
    assert _knob_vectors(data.train_dataset) == {(0.2, 0.9), (0.4, 0.1)}
    assert len(data.train_dataset) == 6 and len(data.val_dataset) == 2
    assert next(iter(data.test_dataloader()))[2].shape == (2, 2)


def test_val_fraction_zero_disables_validation(tmp_path):
    data = _datamodule(make_tonetwist(tmp_path), settings=["C030_R050"], val_fraction=0.0)
    data.setup("fit")
    assert data.val_dataset is None and data.val_dataloader() == []
    assert len(data.train_dataset) == 8


def test_synth_audio_of_another_generator_version_is_not_used(tmp_path):
    from nablafx.data.synth.manifest import DRY_FOLDER, DRY_MANIFEST, GENERATOR_VERSION

    root = tmp_path / "synth"
    make_tonetwist(root, device="Synth-Overdrive", settings=("G050",))
    manifest = root / DRY_FOLDER / DRY_MANIFEST
    manifest.parent.mkdir(parents=True, exist_ok=True)  # make_tonetwist writes the dry files there
    manifest.write_text(json.dumps({"generator": "nablafx.data.synth", "version": "1"}))
    data = _datamodule(root, device="Synth-Overdrive", synth={"device": "overdrive", "seconds": 1.0})
    with pytest.raises(DataError, match=f"generator version 1, but this nablafx renders version {GENERATOR_VERSION}"
                       ) as error:
        data.prepare_data()
    assert str(root) in str(error.value) and "delete the folder" in str(error.value)
    manifest.write_text(json.dumps({"generator": "nablafx.data.synth", "version": GENERATOR_VERSION}))
    data.setup("fit")  # the current version is used as it is


def test_missing_dataset_raises_in_setup(tmp_path):
    data = _datamodule(tmp_path / "missing")
    with pytest.raises(DataError, match="missing"):
        data.setup("fit")


def test_synth_renders_the_dataset_once_when_missing(tmp_path, monkeypatch):
    calls = []

    def render_dataset(out_dir, progress=None, **kwargs):
        calls.append(kwargs)
        make_tonetwist(Path(out_dir), device="Synth-Overdrive", settings=("G050",))
        return Path(out_dir)

    checked = []
    monkeypatch.setitem(sys.modules, "nablafx.data.synth.render", types.SimpleNamespace(render_dataset=render_dataset))
    monkeypatch.setitem(sys.modules, "nablafx.data.synth.manifest",
                        types.SimpleNamespace(check_generator_version=checked.append))
    synth = {"device": "overdrive", "seconds": 1.0}
    data = _datamodule(tmp_path / "synth", device="Synth-Overdrive", synth=synth)
    data.prepare_data()
    data.prepare_data()  # the dataset exists now: not rendered again, but its version is checked
    data.setup("fit")
    assert calls == [{"device": "overdrive", "seconds": 1.0}]
    assert checked == [tmp_path / "synth"] * 2
    # what the fake renderer wrote: 1 setting x 2 files x 3 segments of 0.25 s in the first 75 % of 1 s
    assert len(data.train_dataset) == 6 and len(data.val_dataset) == 2
