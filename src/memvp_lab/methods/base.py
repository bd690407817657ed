"""What every method config has: optimisation settings and extra parts of the LM to unfreeze.

Method configs are typed dataclasses (registered as Hydra schemas) whose YAML files hold the
values; ``build`` turns one into a ``VisionLanguageModel`` on a given backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING


class Schedule(str, Enum):
    constant = "constant"  # linear warm-up, then constant
    cosine = "cosine"  # linear warm-up, then half-cycle cosine to min_lr_ratio * lr
    linear = "linear"  # linear warm-up, then linear decay to min_lr_ratio * lr


@dataclass
class VisualSpec:
    """What the method needs to know about the visual input."""

    feature_dim: int
    num_tokens: int
    grid: bool = True  # tokens form a square spatial grid (False: e.g. a sequence of video frames)


@dataclass
class MethodConfig:
    """Fields shared by all methods (values live in ``conf/method/*.yaml``)."""

    _target_: str = MISSING
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING  # applied to tensors with ndim >= 2 only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = MISSING
    schedule: Schedule = MISSING
    min_lr_ratio: float = 0.0
    unfreeze: list[str] = field(default_factory=list)  # layer_norms | biases | all
    # Learning-rate multipliers by trainable-parameter name (fnmatch patterns, first match wins),
    # e.g. method.lr_multipliers={prompting.projector.*:10}; unmatched parameters train at ``lr``.
    lr_multipliers: Any = None  # dict[str, float] or None (Any: Hydra can then set it from the command line)
    # Reuse the output of the frozen, unhooked bottom decoder layers per distinct text (decoder-only;
    # pays for MemVP with first_layer > 0 on repeated texts). The same computation, checked on first use.
    cache_frozen_prefix: bool = False

    def __post_init__(self) -> None:
        coerce_enums(self)


def coerce_enums(config) -> None:
    """Turns strings into the Enum members a field is annotated with (for use from Python)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        kind = hints.get(f.name)
        value = getattr(config, f.name)
        if isinstance(kind, type) and issubclass(kind, Enum) and isinstance(value, str) and value != MISSING:
            setattr(config, f.name, kind(value))
