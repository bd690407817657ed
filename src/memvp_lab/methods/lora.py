"""LoRA (Hu et al., 2022) through Hugging Face ``peft``, plus an input-space visual prompt.

The reference baselines compute ``W x + b + (Dropout(x) A^T B^T) * alpha / r`` with A
Kaiming-uniform (a = sqrt 5) and B zero on the query and value projections of every attention;
``peft``'s ``LoraConfig(init_lora_weights=True)`` builds exactly that, so it is used as is.
Biases or layer norms that a reference also trained are ``method.unfreeze`` entries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import MISSING
from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import register_method
from memvp_lab.nn.injection import report
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)

# Projection roles -> module names in BART / LLaMA-family (``*_proj``) and T5 (one letter).
# Phi-3 fuses q, k and v into one ``qkv_proj``: any of those roles puts one LoRA pair on it, whose
# B spans the query, key and value outputs (how LoRA is applied to Phi-3 in general).
FUSED_QKV = "qkv_proj"
PROJECTIONS = {
    "q": ("q_proj", "q", FUSED_QKV),
    "k": ("k_proj", "k", FUSED_QKV),
    "v": ("v_proj", "v", FUSED_QKV),
    "o": ("out_proj", "o_proj", "o"),
}


@register_method("lora")
@dataclass
class LoRAConfig(InputSpaceMethodConfig):
    r: int = MISSING  # rank
    alpha: float = MISSING  # the update is scaled by alpha / r
    dropout: float = MISSING  # on the LoRA input
    targets: list[str] = MISSING  # attention projections: q | k | v | o

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.r <= 0:
            raise ConfigError(f"method.r={self.r} must be positive")
        unknown = [t for t in self.targets if t not in PROJECTIONS]
        if unknown or not self.targets:
            raise ConfigError(f"method.targets={self.targets}: expected a non-empty subset of {list(PROJECTIONS)}")

    def inject(self, backbone: Backbone) -> list[str]:
        names = sorted({n for t in self.targets for n in PROJECTIONS[t]})
        config = PeftLoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=names,
            bias="none",
            init_lora_weights=True,
        )
        try:
            inject_adapter_in_model(config, backbone.model)
        except ValueError as err:  # peft: "Target modules ... not found in the base model"
            raise ConfigError(f"method.targets={self.targets}: {err}") from None
        added = [n for n, _ in backbone.model.named_modules() if n.endswith((".lora_A", ".lora_B"))]
        if any(f".{FUSED_QKV}." in n for n in added):
            log.warning(
                "method.targets=%s: %s has fused %s projections; LoRA is applied to the fused matrix",
                self.targets,
                backbone.name,
                FUSED_QKV,
            )
        return report(self.name, backbone.name, added, f"LoRA r={self.r} matrices on {names}")
