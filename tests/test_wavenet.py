"""NAM-compatible WaveNet: preset sizes, receptive field, streaming, knobs, configs, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nablafx.core import from_config, process_in_blocks, to_config
from nablafx.models.wavenet import PRESETS, WaveNet

CFG = Path(__file__).resolve().parents[1] / "cfg" / "model" / "wavenet"

# Weights as NAM counts them (head_scale included) -- peers.md / export-formats.md.
NAM_WEIGHTS = {"standard": 13_802, "lite": 6_554, "feather": 3_026, "nano": 842}

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.mark.parametrize("preset", list(NAM_WEIGHTS))
def test_preset_weights_and_receptive_field(preset):
    net = WaveNet(preset=preset)
    assert sum(p.numel() for p in net.parameters()) == NAM_WEIGHTS[preset]
    assert net.receptive_field == 4_093


def test_head_scale_is_a_fixed_weight():
    net = WaveNet(preset="nano")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == NAM_WEIGHTS["nano"] - 1
    assert float(net.head_scale) == pytest.approx(0.02)


@pytest.mark.parametrize("num_knobs", [0, 2])
def test_block_streaming_equals_one_call(num_knobs):
    torch.manual_seed(0)
    net = WaveNet(num_knobs=num_knobs, preset="lite", head_scale=1.0).eval()
    x = torch.randn(2, 1, 5000) * 0.5
    knobs = torch.rand(2, num_knobs) if num_knobs else None
    with torch.no_grad():
        y, _ = net(x, knobs)
        for block in (64, 97, 4096):
            streamed, _ = process_in_blocks(net, x, knobs, block)
            torch.testing.assert_close(streamed, y, atol=1e-6, rtol=0)
        # blocks of 1 and 7 samples on the first part (hundreds of calls per second of audio)
        for block in (1, 7):
            streamed, _ = process_in_blocks(net, x[..., :300], knobs, block)
            torch.testing.assert_close(streamed, y[..., :300], atol=1e-6, rtol=0)


@pytest.mark.parametrize("gated", [False, True])
def test_channel_major_form_computes_the_same_model(gated):
    """The channel-major form (the one ONNX gets) against the default time-major form: one call,
    streamed blocks with its own state layout, and the valid form."""
    torch.manual_seed(0)
    layers = [dict(spec, gated=gated) for spec in PRESETS["nano"]]
    net = WaveNet(num_knobs=2, layers=layers, head_scale=1.0).double().eval()
    x = torch.randn(2, 1, 5000, dtype=torch.double) * 0.5
    knobs = torch.rand(2, 2, dtype=torch.double)
    with torch.no_grad():
        y, state = net(x, knobs)
        tail = net.forward_from(x, knobs, 4500)
        net.channel_major = True
        y_channels, state_channels = net(x, knobs)
        streamed, _ = process_in_blocks(net, x, knobs, 97)
        tail_channels = net.forward_from(x, knobs, 4500)
    torch.testing.assert_close(y_channels, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(streamed, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(tail_channels, tail, atol=1e-12, rtol=0)
    for time_major, channel_major in zip(state, state_channels):
        torch.testing.assert_close(channel_major, time_major.transpose(1, 2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("num_knobs", [0, 2])
def test_training_form_equals_the_tail_of_a_call_from_silence(num_knobs):
    # forward_from computes only the outputs that have their whole history (the valid form of
    # every layer); they, and their gradients, must be those of the full call.
    torch.manual_seed(0)
    net = WaveNet(num_knobs=num_knobs, preset="lite", head_scale=1.0).double()
    x = torch.randn(2, 1, 6000, dtype=torch.double) * 0.5
    knobs = torch.rand(2, num_knobs, dtype=torch.double) if num_knobs else None
    full, _ = net(x, knobs)
    for start in (net.receptive_field - 1, 5000, 10):  # 10: shorter than the history, falls back
        torch.testing.assert_close(net.forward_from(x, knobs, start), full[..., start:], atol=1e-12, rtol=0)
    start = net.receptive_field + 100
    grads = []
    for output in (net.forward_from(x, knobs, start), net(x, knobs)[0][..., start:]):
        net.zero_grad()
        output.pow(2).sum().backward()
        # (the last layer's residual 1x1 feeds nothing, so it has no gradient in either)
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for valid, reference in zip(*grads):
        torch.testing.assert_close(valid, reference, atol=1e-10, rtol=1e-9)


def test_causal_output_ignores_the_future():
    torch.manual_seed(0)
    net = WaveNet(preset="nano", head_scale=1.0).eval()
    x = torch.randn(1, 1, 600)
    changed = x.clone()
    changed[..., 400:] = 0
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0][..., :400], net(changed)[0][..., :400])


def test_state_layout_one_context_per_layer():
    net = WaveNet(preset="feather")
    _, state = net(torch.zeros(1, 1, 10))
    assert len(state) == net.num_layers == 20
    contexts = [s.shape[1] for s in state]  # time-major: (batch, context, channels)
    assert contexts == [2 * d for spec in PRESETS["feather"] for d in spec["dilations"]]
    with pytest.raises(ValueError, match="state list of 20"):
        net(torch.zeros(1, 1, 10), state=state[:3])


def test_knobs_are_condition_channels():
    torch.manual_seed(0)
    net = WaveNet(num_knobs=1, preset="nano", head_scale=1.0).eval()
    x = torch.randn(1, 1, 300)
    with torch.no_grad():
        low, _ = net(x, torch.tensor([[0.0]]))
        high, _ = net(x, torch.tensor([[1.0]]))
    assert (low - high).abs().max() > 1e-3
    assert net.arrays[0].layers[0].condition_size == 2  # audio + one knob
    with pytest.raises(ValueError, match="needs 1 knob"):
        net(x)


def test_bad_layer_arrays_are_refused():
    with pytest.raises(ValueError, match="unknown WaveNet preset"):
        WaveNet(preset="huge")
    with pytest.raises(ValueError, match="head_size 4 must equal the channels of array 1"):
        WaveNet(layers=[{"channels": 8, "head_size": 4, "kernel_size": 3, "dilations": [1]},
                        {"channels": 6, "head_size": 1, "kernel_size": 3, "dilations": [1]}])
    with pytest.raises(ValueError, match="last layer array must have head_size 1"):
        WaveNet(layers=[{"channels": 8, "head_size": 2, "kernel_size": 3, "dilations": [1]}])
    with pytest.raises(ValueError, match="unknown activation"):
        WaveNet(layers=[{"channels": 8, "head_size": 1, "kernel_size": 3, "dilations": [1], "activation": "Gelu"}])


def test_config_round_trip_rebuilds_the_same_model():
    torch.manual_seed(0)
    net = WaveNet(num_knobs=1, preset="nano")
    rebuilt = from_config(to_config(net))
    rebuilt.load_state_dict(net.state_dict())
    x, k = torch.randn(1, 1, 200), torch.rand(1, 1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, k)[0], net(x, k)[0])


@pytest.mark.parametrize("preset", list(NAM_WEIGHTS))
def test_config_files_build_the_presets_and_train(preset):
    config = yaml.safe_load((CFG / f"wavenet-{preset}.yaml").read_text())["model"]
    net = from_config(config["net"])
    assert config["net"]["class_path"] == "nablafx.models.wavenet.WaveNet"
    assert config["lr"] == 0.004
    assert sum(p.numel() for p in net.parameters()) == NAM_WEIGHTS[preset]
    # gradients reach every trainable weight but the last layer's residual 1x1, which feeds
    # nothing (it exists for NAM's weight layout)
    unused = {id(p) for p in net.arrays[-1].layers[-1].layer1x1.parameters()}
    y, _ = net(torch.randn(2, 1, 512) * 0.3)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        if p.requires_grad and id(p) not in unused:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
