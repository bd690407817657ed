"""Full fine-tuning: the whole language model trains, with VL-T5's visual prompt (paper Table 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from memvp_lab.methods.input_space.method import InputSpaceMethodConfig


@dataclass
class FullFineTuningConfig(InputSpaceMethodConfig):
    _target_: str = "memvp_lab.methods.full_ft.FullFineTuningConfig"
    unfreeze: list[str] = field(default_factory=lambda: ["all"])
