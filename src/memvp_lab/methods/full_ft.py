"""Full fine-tuning: the whole language model trains, with VL-T5's visual prompt (paper Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import register_method


@register_method("full_ft")
@dataclass
class FullFineTuningConfig(InputSpaceMethodConfig):
    """Every LM weight trains: ``unfreeze: [all]`` in its YAML."""
