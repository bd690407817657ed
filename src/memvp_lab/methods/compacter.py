"""Compacter (Karimi Mahabadi et al., 2021) as VL-Adapter's code runs it: the adapter of VL-Adapter
with both projections replaced by PHM layers (n=2, own rule per layer, no factorisation)."""

from __future__ import annotations

from dataclasses import dataclass

from memvp_lab.config.errors import ConfigError
from memvp_lab.methods.adapters import PHMAdapter
from memvp_lab.methods.base import VisualSpec
from memvp_lab.methods.vl_adapter import VLAdapterConfig


@dataclass
class CompacterConfig(VLAdapterConfig):
    _target_: str = "memvp_lab.methods.compacter.CompacterConfig"
    hidden: int = 96  # the paper's Table 5 says 48, but its 3.87M / 6.11M need 96 (reduction factor 8)
    n: int = 2  # Kronecker factors

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.n <= 0 or self.hidden % self.n:
            raise ConfigError(f"method.hidden={self.hidden} must be divisible by method.n={self.n}")

    def make(self, d_model: int):
        if d_model % self.n:
            raise ConfigError(f"the backbone width {d_model} is not divisible by method.n={self.n}")
        return PHMAdapter(d_model, self.hidden, self.n)
