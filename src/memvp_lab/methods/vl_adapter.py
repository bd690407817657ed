"""VL-Adapter (Sung et al., 2022): a bottleneck adapter on the output of every attention and FFN
sub-layer, before its dropout and residual add (Houlsby placement), in encoder and decoder:
BART-base 30 sites, T5-base 60. Trained with the layer norms and the visual prompt."""

from __future__ import annotations

from dataclasses import dataclass

from memvp_lab.backbones.base import Backbone
from memvp_lab.config.errors import ConfigError
from memvp_lab.methods.adapters import BottleneckAdapter
from memvp_lab.methods.adapters.modules import INITS
from memvp_lab.methods.base import VisualSpec
from memvp_lab.methods.injection import attach_to_sublayer, report
from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.sublayers import find_sublayers


def _residual_adapter(module, x2, x1):
    return x2 + module(x2)


@dataclass
class VLAdapterConfig(InputSpaceMethodConfig):
    _target_: str = "memvp_lab.methods.vl_adapter.VLAdapterConfig"
    hidden: int = 48  # bottleneck width d (768 / reduction factor 16)
    init: str = "normal"  # normal (BART) | torch (T5)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.hidden <= 0:
            raise ConfigError(f"method.hidden={self.hidden} must be positive")
        if self.init not in INITS:
            raise ConfigError(f"method.init={self.init!r}: expected one of {INITS}")

    def make(self, d_model: int):
        return BottleneckAdapter(d_model, self.hidden, self.init)

    def inject(self, backbone: Backbone) -> list[str]:
        added = [
            attach_to_sublayer(site, "adapter", self.make(backbone.hidden_size), _residual_adapter)
            for site in find_sublayers(backbone.model)
        ]
        return report(self.name, backbone.name, added, "attention / FFN sub-layers")
