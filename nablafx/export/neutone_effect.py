"""The Neutone FX wrapper class; imported only when exporting, since ``neutone-sdk`` is optional
(and configures the root logger when imported). See :mod:`nablafx.export.neutone`."""

from __future__ import annotations

from typing import Dict, List

import torch
from neutone_sdk import ContinuousNeutoneParameter, WaveformToWaveformBase
from torch import Tensor

from nablafx.export.metadata import ExportMetadata
from nablafx.export.neutone import neutone_info
from nablafx.export.torchscript import StatefulStreamer


class NeutoneEffect(WaveformToWaveformBase):
    """The TorchScript export's :class:`~nablafx.export.torchscript.StatefulStreamer` (traced step,
    state, pieces of ``max_piece``) as a Neutone FX model (see :mod:`nablafx.export.neutone`)."""

    def __init__(self, streamer: StatefulStreamer, metadata: ExportMetadata):
        # The SDK calls the metadata methods inside its constructor, so the values go in
        # first, outside nn.Module's attribute machinery; one attribute per value, since
        # TorchScript compiles those methods too and needs each attribute to have one type.
        info = neutone_info(metadata)
        for key, value in info.items():
            object.__setattr__(self, f"_{key}", value)
        object.__setattr__(self, "_knob_names", list(metadata.knob_names))
        object.__setattr__(self, "_sample_rate", metadata.sample_rate or 0)
        object.__setattr__(self, "_model_version", metadata.nablafx_version)
        super().__init__(streamer)  # the SDK scripts it with this wrapper; it keeps the state
        self.latency = metadata.latency

    def get_model_name(self) -> str:
        return self._name

    def get_model_authors(self) -> List[str]:
        return self._authors

    def get_model_short_description(self) -> str:
        return self._short_description

    def get_model_long_description(self) -> str:
        return self._long_description

    def get_technical_description(self) -> str:
        return self._technical_description

    def get_tags(self) -> List[str]:
        return self._tags

    def get_model_version(self) -> str:
        return self._model_version

    def is_experimental(self) -> bool:
        return False

    def get_neutone_parameters(self):
        return [
            ContinuousNeutoneParameter(name, f"knob {name} (0-1, as in the training data)", default_value=0.5)
            for name in self._knob_names
        ]

    def is_input_mono(self) -> bool:
        return True

    def is_output_mono(self) -> bool:
        return True

    def get_native_sample_rates(self) -> List[int]:
        return [self._sample_rate] if self._sample_rate else []

    def get_native_buffer_sizes(self) -> List[int]:
        return []  # the step streams any buffer size

    def do_forward_pass(self, x: Tensor, params: Dict[str, Tensor]) -> Tensor:
        knobs = [params[name] for name in self.neutone_parameter_names]  # the knob names, in order
        k = (torch.stack(knobs, dim=-1) if len(knobs) > 0 else x.new_zeros(1, 0)).reshape(1, -1)
        return self.model.process(x.reshape(-1), k).reshape(x.shape)

    def reset_model(self) -> bool:
        self.model.reset()
        return True

    @torch.jit.export
    def calc_model_delay_samples(self) -> int:
        return self.latency
