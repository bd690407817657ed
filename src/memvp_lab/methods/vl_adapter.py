"""VL-Adapter (Sung et al., 2022): a bottleneck adapter on the output of every attention and FFN
sub-layer, before its dropout and residual add (Houlsby placement), in encoder and decoder:
BART-base 30 sites, T5-base 60. Trained with the layer norms and the visual prompt."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING
from torch import nn

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.adapters import BottleneckAdapter
from memvp_lab.methods.adapters.modules import INITS
from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import register_method
from memvp_lab.nn.injection import attach_to_sublayer, report
from memvp_lab.nn.sublayers import find_sublayers_or_fail
from memvp_lab.vision.spec import VisualSpec


def _residual_adapter(module, x2, x1):
    return x2 + module(x2)


@dataclass
class SublayerAdapterConfig(InputSpaceMethodConfig):
    """An adapter (``make``) on the output of every attention and FFN sub-layer."""

    hidden: int = MISSING  # bottleneck width

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.hidden <= 0:
            raise ConfigError(f"method.hidden={self.hidden} must be positive")

    def make(self, d_model: int) -> nn.Module:
        raise NotImplementedError

    def inject(self, backbone: Backbone) -> list[str]:
        added = [
            attach_to_sublayer(site, "adapter", self.make(backbone.hidden_size), _residual_adapter)
            for site in find_sublayers_or_fail(backbone.model, self.name, backbone.name)
        ]
        return report(self.name, backbone.name, added, "attention / FFN sub-layers")


@register_method("vl_adapter")
@dataclass
class VLAdapterConfig(SublayerAdapterConfig):
    init: str = MISSING  # normal: N(0, 0.02) (BART) | torch: PyTorch's default (T5)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.init not in INITS:
            raise ConfigError(f"method.init={self.init!r}: expected one of {INITS}")

    def make(self, d_model: int) -> nn.Module:
        return BottleneckAdapter(d_model, self.hidden, self.init)
