"""What a method and a data module need to know about the visual input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VisualSpec:
    """The visual features of one image: ``num_tokens`` vectors of ``feature_dim``."""

    feature_dim: int
    num_tokens: int
    grid: bool = True  # tokens form a square spatial grid (False: e.g. a sequence of video frames)
