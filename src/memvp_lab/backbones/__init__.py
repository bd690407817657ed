"""Language-model backbones: pretrained (hub id or local dir), the SmolLM2 wheel, tiny random."""

from memvp_lab.backbones.base import Backbone, TextFormat

__all__ = ["Backbone", "TextFormat"]
