"""2D adaptive pooling of a grid of visual tokens (VL-T5's ``Downsample``; paper Fig. 4 right)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memvp_lab.errors import ConfigError
from memvp_lab.vision.spec import VisualSpec


def check_pooling(key: str, size: int | None, mode: str, visual: VisualSpec) -> None:
    """Raises ``ConfigError`` naming ``<key>.pool_size`` / ``<key>.pool_mode`` (e.g. ``key="method"``)
    when pooling to ``size x size`` with ``mode`` cannot apply to ``visual``."""
    if mode not in ("max", "avg"):
        raise ConfigError(f"{key}.pool_mode={mode!r}: expected max or avg")
    if size is None:
        return
    if size and not visual.grid:
        raise ConfigError(
            f"{key}.pool_size={size} pools a 2D grid, but this vision config gives a sequence of tokens "
            f"(vision.grid=false); set {key}.pool_size=null"
        )
    if size <= 0 or size * size > visual.num_tokens:
        raise ConfigError(
            f"{key}.pool_size={size} must be positive with pool_size^2 <= the {visual.num_tokens} visual "
            "tokens (or null for no pooling)"
        )


def pooled_tokens(num_tokens: int, size: int | None) -> int:
    """Visual tokens after pooling a square grid of ``num_tokens`` to ``size x size``."""
    return num_tokens if not size else size * size


class GridPool(nn.Module):
    """(B, g*g, C) -> (B, s*s, C) by adaptive max or average pooling over the g x g grid, rows first.

    ``size=None`` (or 0) keeps the tokens as they are. VL-T5 max-pools 7x7 CLIP grids to 6x6: the
    2x2 windows overlap.
    """

    def __init__(self, size: int | None, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"pool mode {mode!r}: expected max or avg")
        self.size, self.mode = size or None, mode

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.size is None:
            return tokens
        b, m, c = tokens.shape
        g = math.isqrt(m)
        if g * g != m:
            raise ValueError(f"pooling needs a square grid of visual tokens, got {m}")
        grid = tokens.transpose(1, 2).reshape(b, c, g, g)
        pool = F.adaptive_max_pool2d if self.mode == "max" else F.adaptive_avg_pool2d
        return pool(grid, self.size).flatten(2).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode}"


class MeanPool(nn.Module):
    """(B, m, C) -> (B, 1, C): the mean visual token (a stand-in for a [CLS] feature)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1, keepdim=True)
