"""Black-box model zoo: parameter counts, configs, receptive fields, build-time and call-time errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from nablafx.core import from_config, to_config
from nablafx.models import GCN, RNN, S4, TCN

CFG = Path(__file__).resolve().parents[1] / "cfg" / "model"
MODEL_CONFIGS = sorted(p for family in ("tcn", "gcn", "s4", "rnn") for p in (CFG / family).glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- parameter counts vs the reference tables (model-zoo.md) -------------------------------------

CONV_SIZES = {
    "45-s": dict(num_blocks=5, kernel_size=7, dilation_growth=4),
    "45-l": dict(num_blocks=10, kernel_size=3, dilation_growth=2),
    "250-s": dict(num_blocks=6, kernel_size=11, dilation_growth=4),
    "250-l": dict(num_blocks=11, kernel_size=7, dilation_growth=2),
    "2500-s": dict(num_blocks=5, kernel_size=13, dilation_growth=10),
    "2500-l": dict(num_blocks=10, kernel_size=5, dilation_growth=3),
}
S4_SIZES = {"b4-s4-c16": dict(num_blocks=4, state_size=4), "b8-s32-c16": dict(num_blocks=8, state_size=32)}

# (family, size, conditioning, num_knobs) -> published count. Every figure is matched
# exactly, including FiLM/TTFiLM/TVFiLM: our deliberate differences -- causal block-rate
# modulation (one control block of delay), TTFiLM's read-out ending linear instead of with
# a ReLU, GCN skipping the unused last residual mix in the forward pass -- change
# behaviour, not parameters.
PUBLISHED = {
    ("tcn", "45-s", "none", 0): 7_457, ("tcn", "45-s", "tfilm", 0): 39_457,
    ("tcn", "45-s", "ttfilm", 0): 16_997, ("tcn", "45-s", "tvfilm", 0): 17_217,
    ("tcn", "45-l", "none", 0): 7_297, ("tcn", "45-l", "tfilm", 0): 71_297,
    ("tcn", "45-l", "ttfilm", 0): 26_377, ("tcn", "45-l", "tvfilm", 0): 22_337,
    ("tcn", "250-s", "none", 0): 14_465, ("tcn", "250-s", "tfilm", 0): 52_865,
    ("tcn", "250-s", "ttfilm", 0): 25_913, ("tcn", "250-s", "tvfilm", 0): 25_281,
    ("tcn", "250-l", "none", 0): 18_401, ("tcn", "250-l", "tfilm", 0): 88_801,
    ("tcn", "250-l", "ttfilm", 0): 39_389, ("tcn", "250-l", "tvfilm", 0): 34_497,
    ("tcn", "2500-s", "none", 0): 13_697, ("tcn", "2500-s", "tfilm", 0): 45_697,
    ("tcn", "2500-s", "ttfilm", 0): 23_237, ("tcn", "2500-s", "tvfilm", 0): 23_457,
    ("tcn", "2500-l", "none", 0): 11_937, ("tcn", "2500-l", "tfilm", 0): 75_937,
    ("tcn", "2500-l", "ttfilm", 0): 31_017, ("tcn", "2500-l", "tvfilm", 0): 26_977,
    ("gcn", "45-s", "none", 0): 16_161, ("gcn", "45-s", "tfilm", 0): 141_601,
    ("gcn", "45-l", "none", 0): 17_121, ("gcn", "45-l", "tfilm", 0): 268_001,
    ("gcn", "250-s", "none", 0): 30_433, ("gcn", "250-s", "tfilm", 0): 180_961,
    ("gcn", "250-l", "none", 0): 39_585, ("gcn", "250-l", "tfilm", 0): 315_553,
    ("gcn", "2500-s", "none", 0): 28_641, ("gcn", "2500-s", "tfilm", 0): 154_081,
    ("gcn", "2500-l", "none", 0): 26_401, ("gcn", "2500-l", "tfilm", 0): 277_281,
    ("s4", "b4-s4-c16", "none", 0): 2_353, ("s4", "b4-s4-c16", "tfilm", 0): 27_953,
    ("s4", "b8-s32-c16", "none", 0): 18_993, ("s4", "b8-s32-c16", "tfilm", 0): 70_193,
    # parametric, one knob
    ("tcn", "45-s", "film", 1): 14_913, ("tcn", "45-s", "tfilm", 1): 40_097,
    ("tcn", "45-s", "ttfilm", 1): 17_077, ("tcn", "45-s", "tvfilm", 1): 17_345,
    ("tcn", "45-l", "film", 1): 20_033, ("tcn", "45-l", "tfilm", 1): 72_577,
    ("tcn", "45-l", "ttfilm", 1): 26_537, ("tcn", "45-l", "tvfilm", 1): 22_465,
    ("s4", "b4-s4-c16", "film", 1): 8_753, ("s4", "b4-s4-c16", "tfilm", 1): 28_465,
    ("s4", "b4-s4-c16", "ttfilm", 1): 10_049, ("s4", "b4-s4-c16", "tvfilm", 1): 11_185,
    ("s4", "b8-s32-c16", "film", 1): 29_617, ("s4", "b8-s32-c16", "tfilm", 1): 71_217,
    ("s4", "b8-s32-c16", "ttfilm", 1): 34_385, ("s4", "b8-s32-c16", "tvfilm", 1): 32_049,
}
PUBLISHED_RNN = {
    # (hidden, conditioning, knobs) -> count
    (32, "none", 0): 4_513, (96, "none", 0): 38_113,
    (32, "knobs", 1): 4_641, (96, "knobs", 1): 38_497,
    (32, "tvc", 0): 7_777, (32, "tvc", 1): 7_841,
    (96, "tvc", 0): 45_473, (96, "tvc", 1): 45_537,
}


@pytest.mark.parametrize("key", list(PUBLISHED), ids=lambda k: "-".join(map(str, k)))
def test_parameter_count_matches_reference(key):
    family, size, conditioning, knobs = key
    if family == "s4":
        model = S4(num_knobs=knobs, channels=16, conditioning=conditioning, **S4_SIZES[size])
    else:
        cls = TCN if family == "tcn" else GCN
        model = cls(num_knobs=knobs, channels=16, conditioning=conditioning, **CONV_SIZES[size])
    assert num_params(model) == PUBLISHED[key]


@pytest.mark.parametrize("key", list(PUBLISHED_RNN), ids=lambda k: "-".join(map(str, k)))
def test_rnn_parameter_count_matches_reference(key):
    hidden, conditioning, knobs = key
    assert num_params(RNN(num_knobs=knobs, hidden_size=hidden, conditioning=conditioning)) == PUBLISHED_RNN[key]


def test_tcn_defaults_are_tcn_45_s_16():
    model = TCN()
    assert num_params(model) == 7_457
    assert model.receptive_field == 2047


# --- every config builds, runs forward and backward -----------------------------------------------


def net_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["net"]


def test_config_grid_is_complete():
    names = {p.stem for p in MODEL_CONFIGS}
    for family in ("tcn", "gcn"):
        for size in CONV_SIZES:
            for cond in ("", "tf-", "ttf-", "tvf-"):
                assert f"{family}-{cond}{size}-16" in names
            for cond in ("f-", "tf-", "ttf-", "tvf-"):
                assert f"{family}-{cond}{size}-16-k1" in names
    for size in S4_SIZES:
        assert f"s4-{size}" in names and f"s4-tf-{size}" in names and f"s4-f-{size}-k1" in names
    assert {"lstm-32", "lstm-96", "lstm-32-k1", "lstm-tvc-32", "lstm-tvc-96-k1"} <= names


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_trains(path):
    document = yaml.safe_load(path.read_text())["model"]
    assert document["net"]["class_path"].startswith("nablafx.models.")
    assert isinstance(document["lr"], float)
    torch.manual_seed(0)
    model = from_config(document["net"])
    knobs = torch.rand(2, model.num_knobs) if model.num_knobs else None
    assert ("-k" in path.stem) == bool(model.num_knobs)
    x = 0.5 * torch.randn(2, 1, 600)
    y, state = model(x, knobs)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_config_round_trip_rebuilds_the_same_model():
    model = TCN(num_knobs=2, channels=4, num_blocks=3, conditioning="tvfilm")
    rebuilt = from_config(copy.deepcopy(to_config(model)))
    rebuilt.load_state_dict(model.state_dict())
    x, knobs = torch.randn(1, 1, 300), torch.rand(1, 2)
    assert torch.equal(model(x, knobs)[0], rebuilt(x, knobs)[0])


# --- receptive field -------------------------------------------------------------------------------


def impulse_footprints(model, length: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which outputs an impulse at ``position`` reaches, on top of a noise input.

    Returns ``|y(x + impulse) - y(x)|`` (exactly zero where the impulse cannot reach) and
    ``|dy/dx[position]|`` by forward-mode differentiation, which stays nonzero along the
    longest path even where the finite difference cancels in float64 (products of 10+
    small weights and FiLM gains).
    """
    torch.manual_seed(1)
    x = 0.1 * torch.randn(1, 1, length, dtype=torch.float64)
    knobs = torch.rand(1, model.num_knobs, dtype=torch.float64) if model.num_knobs else None
    impulse = torch.zeros_like(x)
    impulse[..., position] = 0.5
    with torch.no_grad():
        difference = (model(x + impulse, knobs)[0] - model(x, knobs)[0]).abs()[0, 0]
    _, tangent = torch.func.jvp(lambda signal: model(signal, knobs)[0], (x,), (impulse,))
    return difference, tangent.abs()[0, 0]


@pytest.mark.parametrize(
    "model, expected_rf",
    [
        (TCN(), 2047),
        (GCN(), 2047),
        (TCN(channels=4, **CONV_SIZES["45-l"]), 2047),
        (GCN(channels=4, num_blocks=3, kernel_size=5, dilation_growth=3), 1 + 4 * (1 + 3 + 9)),
        (TCN(num_knobs=2, channels=4, conditioning="film", **CONV_SIZES["250-l"]), 12283),
    ],
    ids=["tcn-45-s", "gcn-45-s", "tcn-45-l", "gcn-small", "tcn-film-250-l"],
)
def test_receptive_field_is_impulse_response_length(model, expected_rf):
    model = model.double().eval()
    assert model.receptive_field == expected_rf
    position = 50
    difference, sensitivity = impulse_footprints(model, position + expected_rf + 100, position)
    assert difference[:position].max() == 0 and sensitivity[:position].max() == 0  # causal
    assert difference[position] > 0
    assert sensitivity[position + expected_rf - 1] > 0  # the oldest tap of every layer still sees it
    assert difference[position + expected_rf :].max() == 0  # nothing after the receptive field
    assert sensitivity[position + expected_rf :].max() == 0


def test_time_varying_models_report_unbounded_receptive_field():
    assert TCN(conditioning="tfilm").receptive_field == 0
    assert TCN(conditioning="tfilm").conv_receptive_field == 2047
    assert GCN(conditioning="tvfilm").receptive_field == 0
    assert S4().receptive_field == 0 and RNN().receptive_field == 0
    assert TCN(num_knobs=1, conditioning="film").receptive_field == 2047


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TCN, GCN, S4])
def test_unknown_conditioning_lists_valid_names(cls):
    with pytest.raises(ValueError, match="none, film, tfilm, ttfilm, tvfilm"):
        cls(conditioning="tfilm2")


@pytest.mark.parametrize("cls", [TCN, GCN, S4])
def test_film_without_knobs_fails_at_build_time(cls):
    with pytest.raises(ValueError, match="num_knobs >= 1"):
        cls(conditioning="film")
    with pytest.raises(ValueError, match="conditioning method"):
        cls(num_knobs=2)


def test_rnn_build_errors():
    with pytest.raises(ValueError, match="none, knobs, tvc"):
        RNN(conditioning="film")
    with pytest.raises(ValueError, match="num_knobs >= 1"):
        RNN(conditioning="knobs")
    with pytest.raises(ValueError, match="'knobs' or 'tvc'"):
        RNN(num_knobs=1)
    with pytest.raises(ValueError, match="lstm, gru"):
        RNN(cell="rnn")


@pytest.mark.parametrize(
    "model",
    [
        TCN(num_knobs=2, channels=4, num_blocks=2, conditioning="tfilm"),
        S4(num_knobs=2, channels=4, num_blocks=1, conditioning="film"),
        RNN(num_knobs=2, hidden_size=4, conditioning="knobs"),
    ],
    ids=["tcn", "s4", "rnn"],
)
def test_knob_count_mismatch_fails_at_call_time(model):
    x = torch.randn(1, 1, 64)
    with pytest.raises(ValueError, match=r"\(batch=1, 2\)"):
        model(x, torch.rand(1, 3))
    with pytest.raises(ValueError, match="got none"):
        model(x)
    with pytest.raises(ValueError, match="mono"):
        model(torch.randn(1, 2, 64), torch.rand(1, 2))


def test_unconditioned_model_rejects_knobs():
    with pytest.raises(ValueError, match="num_knobs=0"):
        TCN(channels=4, num_blocks=2)(torch.randn(1, 1, 64), torch.rand(1, 1))


@pytest.mark.parametrize(
    "model, entries",
    [
        (TCN(channels=4, num_blocks=3), 3),
        (GCN(num_knobs=1, channels=4, num_blocks=2, conditioning="tvfilm"), 3),  # + the shared encoder's state
        (S4(channels=4, num_blocks=2, state_size=2), 2),
    ],
    ids=["tcn", "gcn-tvfilm", "s4"],
)
def test_state_of_the_wrong_length_is_refused(model, entries):
    from nablafx.errors import ConfigError

    x = torch.randn(1, 1, 64)
    knobs = torch.rand(1, model.num_knobs) if model.num_knobs else None
    _, state = model(x, knobs)
    assert len(state) == entries
    model(x, knobs, state)  # its own state is accepted
    name = type(model).__name__
    with pytest.raises(ConfigError, match=rf"{name} expects a state list of {entries} entries, got {entries - 1};"):
        model(x, knobs, state[:-1])
    with pytest.raises(ConfigError, match=rf"state list of {entries} entries, got a Tensor"):
        model(x, knobs, torch.zeros(entries, 4))  # a tensor with the right first dimension is no state list
