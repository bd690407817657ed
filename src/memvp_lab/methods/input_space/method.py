"""The shape every input-space method shares: a visual prompt at the input, plus what the method
injects into the language model."""

from __future__ import annotations

from dataclasses import dataclass, field

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.methods.input_space.prompt_config import InputPromptConfig, build_input_prompting
from memvp_lab.model.prompting import Prompting
from memvp_lab.vision.spec import VisualSpec


@dataclass
class InputSpaceMethodConfig(MethodConfig):
    """A method whose visual prompts are input tokens (every baseline of the paper)."""

    prompt: InputPromptConfig = field(default_factory=InputPromptConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.prompt, dict):  # instantiated from YAML
            self.prompt = InputPromptConfig(**self.prompt)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        self.prompt.validate(visual)

    def prompting(self, backbone: Backbone, visual: VisualSpec) -> Prompting:
        return build_input_prompting(self.prompt, backbone, visual)
