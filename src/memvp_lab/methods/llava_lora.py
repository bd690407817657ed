"""LLaVA-style LoRA (paper Tables 2-3): visual tokens from a 2-layer projector in front of the text
of a decoder-only model, LoRA on the query and value projections of every layer, and (with
``vision=clip_vit_l14``) the same ViT adapters as MemVP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from memvp_lab.methods.lora import LoRAConfig
from memvp_lab.methods.registry import register_method


@register_method("llava_lora")
@dataclass
class LlavaLoRAConfig(LoRAConfig):
    families: ClassVar[tuple[str, ...]] = ("decoder_only",)  # for BART/T5: method=lora
