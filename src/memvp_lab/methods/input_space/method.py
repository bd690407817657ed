"""The shape every input-space method shares: a visual prompt at the input, plus what the method
injects into the language model."""

from __future__ import annotations

from dataclasses import dataclass, field

from memvp_lab.backbones.base import Backbone
from memvp_lab.config.errors import ConfigError
from memvp_lab.methods.base import MethodConfig, VisualSpec
from memvp_lab.methods.input_space.config import InputPromptConfig, build_input_prompting
from memvp_lab.model import UNFREEZE_PARTS, VisionLanguageModel


@dataclass
class InputSpaceMethodConfig(MethodConfig):
    """A method whose visual prompts are input tokens (every baseline of the paper)."""

    prompt: InputPromptConfig = field(default_factory=InputPromptConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.prompt, dict):  # instantiated from YAML
            self.prompt = InputPromptConfig(**self.prompt)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        """Raises ``ConfigError`` naming the key to change."""
        self.prompt.validate(visual)
        if self.lr <= 0:
            raise ConfigError(f"method.lr={self.lr} must be positive")
        for part in self.unfreeze:
            if part not in UNFREEZE_PARTS:
                raise ConfigError(f"method.unfreeze entry {part!r}: expected one of {UNFREEZE_PARTS}")

    def inject(self, backbone: Backbone) -> list[str]:
        """Adds the method's modules to ``backbone.model``; returns their dotted paths."""
        return []

    def build(self, backbone: Backbone, visual: VisualSpec, vision_tower=None) -> VisionLanguageModel:
        self.validate(visual, backbone.is_encoder_decoder)
        prompting = build_input_prompting(self.prompt, backbone, visual)
        injected = self.inject(backbone)
        return VisionLanguageModel(
            backbone,
            prompting,
            injected=injected,
            unfreeze=self.unfreeze,
            vision_tower=vision_tower,
            cache_frozen_prefix=self.cache_frozen_prefix,
        )
