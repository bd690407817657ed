"""Frozen vision encoders that turn images into grids of feature tokens."""

from memvp_lab.vision.encoders import GridEncoder, build_grid_encoder

__all__ = ["GridEncoder", "build_grid_encoder"]
