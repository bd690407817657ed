"""The method contract: what every method config has and what it must say.

A method is a typed dataclass (registered once with ``@register_method``, see
``memvp_lab.methods.registry``) whose YAML file in ``conf/method/`` holds the values. It declares:

* ``families``: the backbone families it runs on;
* ``validate(visual, is_encoder_decoder)``: raises ``ConfigError`` naming the key to change
  (subclasses extend it and call ``super().validate``);
* ``prompting(backbone, visual)``: the visual path (a ``Prompting`` module);
* ``inject(backbone)``: modules it adds inside the language model (default: none).

``build`` is written once, here: prompting, injection, then the ``VisionLanguageModel`` that
freezes everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from omegaconf import MISSING

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.model.prompting import Prompting
from memvp_lab.model.vision_language_model import UNFREEZE_PARTS, VisionLanguageModel
from memvp_lab.vision.spec import VisualSpec

FAMILIES = ("decoder_only", "encoder_decoder")
_FAMILY_WORDS = {"decoder_only": "a decoder-only", "encoder_decoder": "an encoder-decoder"}


class Schedule(str, Enum):
    constant = "constant"  # linear warm-up, then constant
    cosine = "cosine"  # linear warm-up, then half-cycle cosine to min_lr_ratio * lr
    linear = "linear"  # linear warm-up, then linear decay to min_lr_ratio * lr


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

    # The backbone families the method runs on (a class attribute, not a config key).
    families: ClassVar[tuple[str, ...]] = FAMILIES

    def __post_init__(self) -> None:
        coerce_enums(self)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        """Raises ``ConfigError`` naming the key to change; ``is_encoder_decoder=None``: unknown."""
        if is_encoder_decoder is not None:
            family = FAMILIES[int(is_encoder_decoder)]
            if family not in self.families:
                needed = " or ".join(_FAMILY_WORDS[f] for f in self.families)
                raise ConfigError(
                    f"method={self.name} needs {needed} backbone, and backbone.family={family}; "
                    "choose a backbone of that family or another method"
                )
        if self.lr <= 0:
            raise ConfigError(f"method.lr={self.lr} must be positive")
        for part in self.unfreeze:
            if part not in UNFREEZE_PARTS:
                raise ConfigError(f"method.unfreeze entry {part!r}: expected one of {UNFREEZE_PARTS}")

    def prompting(self, backbone: Backbone, visual: VisualSpec) -> Prompting:
        """The module that brings the visual features to the language model."""
        raise NotImplementedError(f"{type(self).__name__} must define prompting(backbone, visual)")

    def inject(self, backbone: Backbone) -> list[str]:
        """Adds the method's modules inside ``backbone.model``; returns their dotted paths."""
        return []

    def build(
        self, backbone: Backbone, visual: VisualSpec, vision_tower=None, *, validate: bool = True
    ) -> VisionLanguageModel:
        """The method applied to ``backbone``: only its own tensors (and ``unfreeze``) train.

        ``validate=False`` when the config was validated already (``build_model`` validates a
        composed config once, before any weights load).
        """
        if validate:
            self.validate(visual, backbone.is_encoder_decoder)
        prompting = self.prompting(backbone, visual)
        injected = self.inject(backbone)
        return VisionLanguageModel(
            backbone,
            prompting,
            injected=injected,
            unfreeze=self.unfreeze,
            vision_tower=vision_tower,
            cache_frozen_prefix=self.cache_frozen_prefix,
        )


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
