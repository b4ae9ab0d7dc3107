"""One training run across processes (Lightning DDP): sharded windows, synced metrics, rank-0 files.

The end-to-end test runs ``nablafx fit`` twice on the built-in synthetic overdrive: two gloo
processes on the CPU with 4 windows each per step, and one process with 8. The sampler gives
rank ``r`` the windows ``r, r + 2, ...`` of the one seeded draw, so step ``k`` of both runs
trains on the same 8 windows and the validation curves must agree to float precision.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from nablafx.data.datamodule import EffectDataModule
from nablafx.data.dataset import RandomWindowSampler, SegmentDataset, ShardSampler
from nablafx.errors import ConfigError
from nablafx.training.metrics import PerSettingMetrics

from conftest import write_tanh_pairs

SR = 48000


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    return write_tanh_pairs(tmp_path_factory.mktemp("ddp-pairs"), 2)


# --- the samplers --------------------------------------------------------------------------


def shares(dataset, num_windows, replicas, seed=0, epoch=0):
    """Each rank's windows of one epoch, as every rank's own sampler yields them."""
    result = []
    for rank in range(replicas):
        sampler = RandomWindowSampler(dataset, num_windows, seed=seed, num_replicas=replicas, rank=rank)
        sampler.set_epoch(epoch)
        result.append(list(sampler))
        assert len(sampler) == len(result[-1])
    return result


def test_random_windows_are_split_between_ranks_without_overlap_and_repeat_with_the_seed(pairs_root):
    dataset = SegmentDataset([(pairs_root / "a.input.wav", pairs_root / "a.target.wav")], SR,
                             segment_length=1000, region=(0.0, 0.9))
    one_process = RandomWindowSampler(dataset, 60, seed=5)
    one_process.set_epoch(2)
    single = list(one_process)

    rank0, rank1 = shares(dataset, 60, 2, seed=5, epoch=2)
    assert len(rank0) == len(rank1) == 30
    assert not set(rank0) & set(rank1)  # no window goes to both ranks
    # together they are exactly the one-process epoch: rank r holds windows r, r + 2, ...
    assert rank0 == single[0::2] and rank1 == single[1::2]
    assert len(set(single)) == 60  # (and that epoch holds no window twice)
    # reproducible from (seed, epoch), fresh for another epoch or seed
    assert [rank0, rank1] == shares(dataset, 60, 2, seed=5, epoch=2)
    assert shares(dataset, 60, 2, seed=5, epoch=3)[0] != rank0
    assert shares(dataset, 60, 2, seed=6, epoch=2)[0] != rank0

    # 61 windows over 3 ranks: 21 each (DDP steps in lockstep), fresh draws rather than repeats
    thirds = shares(dataset, 61, 3, seed=5, epoch=2)
    assert [len(share) for share in thirds] == [21, 21, 21]
    flat = [window for share in thirds for window in share]
    assert len(set(flat)) == 63
    assert set(single) <= set(flat)  # the first 60 of them are the one-process epoch
    with pytest.raises(ValueError, match="rank"):
        RandomWindowSampler(dataset, 10, num_replicas=2, rank=2)


@pytest.mark.parametrize("total, replicas", [(7, 3), (8, 2), (3, 3), (10, 4)])
def test_shard_sampler_scores_every_segment_once_in_order(total, replicas):
    blocks = [list(ShardSampler(range(total), replicas, rank)) for rank in range(replicas)]
    assert [i for block in blocks for i in block] == list(range(total))  # each once, rank order = order
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert [len(ShardSampler(range(total), replicas, rank)) for rank in range(replicas)] == list(map(len, blocks))


def on_rank(data: EffectDataModule, replicas: int, rank: int) -> EffectDataModule:
    """The data module as rank ``rank`` of a ``replicas``-process DDP trainer sees it."""
    data.trainer = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": replicas, "rank": rank})
    return data


def test_the_data_module_shards_every_loader_by_the_trainers_rank(pairs_root):
    def data(**kwargs):
        options = dict(root=str(pairs_root), segment_seconds=0.05, test_segment_seconds=0.25, batch_size=4,
                       val_fraction=0.25, seed=1,
                       pairs={"train": [["a.input.wav", "a.target.wav"]], "test": [["b.input.wav", "b.target.wav"]]})
        module = EffectDataModule(**{**options, **kwargs})
        module.setup(None)
        return module

    one = data(windows_per_epoch=24)
    ranks = [on_rank(data(windows_per_epoch=24), 2, rank) for rank in range(2)]
    # training: the one-process windows, split; batch_size is per process
    single = list(one.train_dataloader().sampler)
    loaders = [module.train_dataloader() for module in ranks]
    assert [len(loader) for loader in loaders] == [3, 3]  # 12 windows per rank, 4 per batch
    assert list(loaders[0].sampler) + list(loaders[1].sampler) == single[0::2] + single[1::2]
    # validation and test: consecutive blocks, each segment once, nothing repeated to even out
    for split in ("val", "test"):
        full = len(getattr(one, f"{split}_dataset"))
        blocks = [list(getattr(module, f"{split}_dataloader")().sampler) for module in ranks]
        assert blocks[0] + blocks[1] == list(range(full)), split
    # prediction stays unsharded: Lightning splits it between the ranks itself
    assert len(ranks[0].predict_dataloader().sampler) == len(one.test_dataset)
    # consecutive training segments: shuffled, split, the ragged end dropped rather than repeated
    consecutive = [on_rank(data(random_windows=False), 2, rank) for rank in range(2)]
    epoch = [list(module.train_dataloader().sampler) for module in consecutive]
    assert len(epoch[0]) == len(epoch[1]) == len(consecutive[0].train_dataset) // 2
    assert not set(epoch[0]) & set(epoch[1])
    # a process left without validation segments would hang the others: refused up front
    few = on_rank(data(val_fraction=0.05), 16, 0)
    assert len(few.val_dataset) < 16
    with pytest.raises(ConfigError, match="rank 0 of 16 processes gets no validation segments"):
        few.val_dataloader()


# --- per-setting test metrics across real processes ------------------------------------------

SETTINGS = ["G=0"] * 3 + ["G=0.5"] * 4 + ["G=1"] * 3  # 10 test examples in dataset order
BLOCKS = [(0, 6), (6, 10), (10, 10)]  # ranks' contiguous shares; rank 2 gets none


def example_values(first: int, last: int) -> dict[str, torch.Tensor]:
    index = torch.arange(first, last, dtype=torch.float64)
    return {"esr": 0.1 * index + 0.05, "l1": index**2}


def _merge_on_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        metrics = PerSettingMetrics()
        first, last = BLOCKS[rank]
        if last > first:
            metrics.update(SETTINGS[first:last], **example_values(first, last))
        metrics.sync()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"rows": metrics.rows(), "all": metrics.overall()}))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # three processes that each import torch and Lightning: ~10-25 s
def test_per_setting_metrics_merge_every_ranks_examples_over_gloo(tmp_path):
    torch.multiprocessing.spawn(_merge_on_rank, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3)
    expected = PerSettingMetrics()
    expected.update(SETTINGS, **example_values(0, len(SETTINGS)))
    assert [row["setting"] for row in expected.rows()] == ["G=0", "G=0.5", "G=1"]
    for rank in range(3):
        merged = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # the same rows in the same order, on every rank
        assert [row["setting"] for row in merged["rows"]] == [row["setting"] for row in expected.rows()], rank
        for got, want in zip(merged["rows"], expected.rows()):
            assert got == pytest.approx(want), rank
        assert merged["all"] == pytest.approx(expected.overall())
        assert merged["all"]["examples"] == 10
    single = PerSettingMetrics()  # outside a process group sync is a no-op
    single.update(["G=0"], esr=[0.5])
    single.sync()
    assert single.rows() == [{"setting": "G=0", "examples": 1, "esr": 0.5}]


# --- a real two-process training run ------------------------------------------------------------

STEPS, VAL_EVERY = 30, 5


def run_config(synth_root: Path, run_dir: Path) -> dict:
    """A tiny TCN (no BatchNorm: its statistics would be per process) on the two-setting overdrive."""
    return {
        "data": {
            "root": str(synth_root), "device": "Synth-Overdrive", "knobs": ["D"],
            "synth": {"device": "overdrive", "knobs": {"D": [0.3, 0.9]}, "seconds": 6, "test_seconds": 2, "seed": 1},
            "segment_seconds": 0.05, "test_segment_seconds": 0.5, "val_fraction": 0.2,
            "windows_per_epoch": 64, "test_batch_size": 4,
        },
        "model": {
            "net": {"class_path": "nablafx.models.TCN",
                    "init_args": {"num_knobs": 1, "conditioning": "tvfilm", "channels": 8, "num_blocks": 3,
                                  "kernel_size": 5, "dilation_growth": 4}},
            "lr": 0.01, "loss": {"mse": 1.0}, "lr_schedule": "constant",
        },
        "trainer": {
            "accelerator": "cpu", "max_steps": STEPS, "val_check_interval": VAL_EVERY,
            "check_val_every_n_epoch": None, "log_every_n_steps": 1,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(run_dir),
            "logger": [  # the default offline wandb logger, plus CSV to read the curves back
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"project": "nablafx", "save_dir": str(run_dir), "offline": True}},
                {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_dir), "name": "csv"}},
            ],
        },
    }


DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]


def nablafx(cwd: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "nablafx.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def csv_rows(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.rglob("metrics.csv"))
    assert len(files) == 1, files  # one logger run: rank 1 wrote none of its own
    with open(files[0]) as f:
        return list(csv.DictReader(f))


def curve(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(row["step"]), float(row[key])) for row in rows if row.get(key)]


def table(output: str) -> list[tuple[str, int, float]]:
    """The per-setting rows the test printed: (setting, examples, ESR)."""
    return [(m[1], int(m[2]), float(m[3])) for m in re.finditer(r"^(D=\S+)\s+(\d+)\s+(\S+)", output, re.M)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """fit with 2 processes x batch 4 and with 1 process x batch 8, then test the DDP model both ways."""
    root = tmp_path_factory.mktemp("ddp-run")
    synth = root / "synth"
    result = {}
    for name, extra in (("ddp", [*DDP, "--data.batch_size", "4"]), ("single", ["--data.batch_size", "8"])):
        run_dir = root / name
        config = root / f"{name}.yaml"
        config.write_text(yaml.safe_dump(run_config(synth, run_dir)))
        result[name] = {"dir": run_dir, "log": nablafx(root, "fit", "-c", str(config), *extra)}
    (checkpoint,) = sorted((root / "ddp").rglob("last.ckpt"))
    for name, extra in (("ddp", DDP), ("single", [])):
        test_dir = root / f"test-{name}"
        data = {key: value for key, value in run_config(synth, test_dir)["data"].items() if key != "synth"}
        config = {"data": data, "trainer": {
            "accelerator": "cpu", "enable_progress_bar": False, "default_root_dir": str(test_dir),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(test_dir), "name": "csv"}}}}
        path = root / f"test-{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        result[f"test-{name}"] = {"dir": test_dir,
                                  "log": nablafx(root, "test", "-c", str(path), "--ckpt_path", str(checkpoint), *extra)}
    result["root"] = root
    return result


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(runs):
    ddp, single = (curve(csv_rows(runs[name]["dir"]), "val/loss") for name in ("ddp", "single"))
    # validation every 5 steps (Lightning counts from 0: steps 4, 9, ..., 29), over all val segments
    assert [step for step, _ in ddp] == [step for step, _ in single] == list(range(VAL_EVERY - 1, STEPS, VAL_EVERY))
    ddp_loss, single_loss = [loss for _, loss in ddp], [loss for _, loss in single]
    # the same trajectory: every validation loss within 0.5 % (measured: equal to 6 digits)
    assert ddp_loss == pytest.approx(single_loss, rel=5e-3), (ddp_loss, single_loss)
    # and a learning one: both fall by more than 2x from the first validation to the last (measured 2.9x)
    for losses in (ddp_loss, single_loss):
        assert losses[-1] < 0.5 * losses[0], losses
    # the logged training loss (rank 0's 4 windows under DDP) falls too, by more than 10x
    train = curve(csv_rows(runs["ddp"]["dir"]), "train/loss")
    assert len(train) == STEPS
    assert sum(loss for _, loss in train[-5:]) / 5 < 0.1 * train[0][1], train


@pytest.mark.slow
def test_rank_zero_writes_the_one_run(runs):
    run_dir, log = runs["ddp"]["dir"], runs["ddp"]["log"]
    assert "Starting with 2 processes" in log and "distributed_backend=gloo" in log
    assert log.count("rendering the built-in synthetic dataset") == 1  # rendered once, by rank 0
    checkpoint_dirs = sorted(path for path in run_dir.rglob("checkpoints") if path.is_dir())
    assert len(checkpoint_dirs) == 1, checkpoint_dirs
    names = sorted(path.name for path in checkpoint_dirs[0].iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and re.fullmatch(r"best-step\d{7}\.ckpt", names[0]), names
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    media = sorted((checkpoint_dirs[0].parent / "media").glob("val-step*"))
    assert len(media) == STEPS // VAL_EVERY  # one folder per validation, written once
    assert len(list(run_dir.rglob("config.yaml"))) == 1
    # nothing landed outside the run folder (e.g. a second rank's default lightning_logs/ or logs/)
    assert sorted(path.name for path in runs["root"].iterdir() if path.is_dir()) == [
        "ddp", "single", "synth", "test-ddp", "test-single"]


@pytest.mark.slow
def test_the_per_setting_test_table_under_ddp_is_the_one_process_table(runs):
    ddp_log, single_log = runs["test-ddp"]["log"], runs["test-single"]["log"]
    assert "Starting with 2 processes" in ddp_log
    ddp_table, single_table = table(ddp_log), table(single_log)
    # printed once, every setting with all its examples, not rank 0's share (rank 0 holds D=0.3 only)
    assert [(setting, n) for setting, n, _ in ddp_table] == [("D=0.3", 4), ("D=0.9", 4)]
    assert ddp_table == single_table
    ddp_metrics, single_metrics = (csv_rows(runs[name]["dir"])[-1] for name in ("test-ddp", "test-single"))
    keys = {"test/esr", "test/l1", "test/mse", "test/mrstft", "test/lufs_diff",
            "test/setting/D=0.3/esr", "test/setting/D=0.9/esr"}
    assert keys <= set(ddp_metrics)
    for key in keys:
        assert float(ddp_metrics[key]) == pytest.approx(float(single_metrics[key]), rel=1e-5), key
    # the printed table is what is logged per setting (printed to 5 decimals)
    for setting, _, value in ddp_table:
        assert float(ddp_metrics[f"test/setting/{setting}/esr"]) == pytest.approx(value, abs=1e-5), setting


def test_each_rank_writes_its_own_prediction_files(tmp_path):
    from nablafx.training.media import MediaLogger

    module = SimpleNamespace(sample_rate=SR)
    for world_size, rank in ((1, 0), (2, 0), (2, 1)):
        trainer = SimpleNamespace(global_rank=rank, world_size=world_size, checkpoint_callback=None,
                                  log_dir=str(tmp_path), default_root_dir=str(tmp_path))
        MediaLogger().on_predict_batch_end(trainer, module, torch.zeros(2, 1, 100), None, 3)
    names = sorted(path.name for path in (tmp_path / "predictions").iterdir())
    assert names == [f"{prefix}batch0003-{i:02d}.wav" for prefix in ("", "rank0-", "rank1-") for i in range(2)]
