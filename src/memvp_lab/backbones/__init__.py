"""Language-model backbones: pretrained (hub id or local dir), the SmolLM2 wheel, tiny random."""

from memvp_lab.backbones.backbone import Backbone, TextFormat

__all__ = ["Backbone", "TextFormat"]
