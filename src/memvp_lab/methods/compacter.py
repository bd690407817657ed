"""Compacter (Karimi Mahabadi et al., 2021) as VL-Adapter's code runs it: the adapter of VL-Adapter
with both projections replaced by PHM layers (n=2, own rule per layer, no factorisation)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from memvp_lab.errors import ConfigError
from memvp_lab.methods.adapters import PHMAdapter
from memvp_lab.methods.registry import register_method
from memvp_lab.methods.vl_adapter import SublayerAdapterConfig
from memvp_lab.vision.spec import VisualSpec


@register_method("compacter")
@dataclass
class CompacterConfig(SublayerAdapterConfig):
    n: int = MISSING  # Kronecker factors

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.n <= 0 or self.hidden % self.n:
            raise ConfigError(f"method.hidden={self.hidden} must be divisible by method.n={self.n}")

    def make(self, d_model: int):
        if d_model % self.n:
            raise ConfigError(f"the backbone width {d_model} is not divisible by method.n={self.n}")
        return PHMAdapter(d_model, self.hidden, self.n)
