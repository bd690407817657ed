"""LLaVA-style LoRA (paper Tables 2-3): visual tokens from a 2-layer projector in front of the text
of a decoder-only model, LoRA on the query and value projections of every layer, and (with
``vision=clip_vit_l14``) the same ViT adapters as MemVP."""

from __future__ import annotations

from dataclasses import dataclass, field

from memvp_lab.config.errors import ConfigError
from memvp_lab.methods.base import VisualSpec
from memvp_lab.methods.input_space.config import InputPromptConfig
from memvp_lab.methods.lora import LoRAConfig


@dataclass
class LlavaLoRAConfig(LoRAConfig):
    _target_: str = "memvp_lab.methods.llava_lora.LlavaLoRAConfig"
    r: int = 6
    alpha: float = 6.0
    dropout: float = 0.0
    prompt: InputPromptConfig = field(default_factory=lambda: InputPromptConfig(projector_hidden=128))

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if is_encoder_decoder:
            raise ConfigError(
                "method=llava_lora needs a decoder-only backbone (llama_7b, llama_13b, smollm2_135m, "
                "tiny_llama); for BART/T5 use method=lora"
            )
