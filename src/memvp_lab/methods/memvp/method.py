"""MemVP's typed config: its settings, their checks, and the visual memory it attaches to the FFNs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from omegaconf import MISSING

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.methods.memvp.ffn_sites import chosen_sites
from memvp_lab.methods.memvp.memory import Ablation, VisualMemory, min_slots
from memvp_lab.methods.registry import register_method
from memvp_lab.vision.pooling import GridPool, check_pooling, pooled_tokens
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)


class LayerSet(str, Enum):
    encoder = "encoder"
    decoder = "decoder"
    all = "all"


def check_layers(layers: LayerSet, is_encoder_decoder: bool | None) -> None:
    """Raises ``ConfigError`` when ``method.layers=encoder`` meets a decoder-only backbone."""
    if is_encoder_decoder is False and layers is LayerSet.encoder:
        raise ConfigError("method.layers=encoder but the backbone is decoder-only; set method.layers=decoder or all")


@register_method("memvp")
@dataclass
class MemVPConfig(MethodConfig):
    """Memory-space visual prompting (paper Sec. 4.2)."""

    n: int = MISSING  # memory slots (length of the position embeddings)
    lam: float = MISSING  # lambda: scale of the projected visual prompts
    scale: float = MISSING  # s: output scale of the memory term
    dropout: float = MISSING  # on the activated scores
    projector_hidden: int = MISSING  # 0: one Linear; >0: Linear -> SiLU -> Linear
    projector_bias: bool = MISSING
    shared_positions: bool = MISSING  # one (P_k, P_v) for all FFNs (LLaMA) or one per FFN (BART/T5)
    layers: LayerSet = MISSING  # which FFNs get memory
    first_layer: Optional[int] = None  # within each chosen stack, memory in layers [first_layer, last_layer)
    last_layer: Optional[int] = None
    ablation: Ablation = MISSING  # paper Table 4
    pos_k_init_std: float = MISSING
    pos_v_init_std: float = MISSING
    pool_size: Optional[int] = None  # 2D adaptive pooling of the visual grid to pool_size^2 tokens; null: none
    pool_mode: str = "max"  # max | avg

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        check_pooling("method", self.pool_size, self.pool_mode, visual)
        needed = min_slots(self.ablation, pooled_tokens(visual.num_tokens, self.pool_size))
        if self.n < needed:
            raise ConfigError(
                f"method.n={self.n} is smaller than the {needed} visual tokens of the vision encoder; "
                f"set method.n>={needed}"
            )
        check_layers(self.layers, is_encoder_decoder)
        for key in ("lam", "scale"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"method.{key}={getattr(self, key)} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"method.dropout={self.dropout} must be in [0, 1)")

    def prompting(self, backbone: Backbone, visual: VisualSpec) -> VisualMemory:
        """Visual memory attached to the backbone's FFNs."""
        sites = chosen_sites(
            backbone.model, "memvp", backbone.name, self.layers.value, self.first_layer, self.last_layer
        )
        memory = VisualMemory(
            sites,
            backbone.hidden_size,
            visual.feature_dim,
            visual.num_tokens,
            n=self.n,
            lam=self.lam,
            scale=self.scale,
            dropout=self.dropout,
            projector_hidden=self.projector_hidden,
            projector_bias=self.projector_bias,
            shared_positions=self.shared_positions,
            ablation=self.ablation,
            pos_k_init_std=self.pos_k_init_std,
            pos_v_init_std=self.pos_v_init_std,
            pool=GridPool(self.pool_size, self.pool_mode),
        )
        log.info(
            "MemVP: visual memory (%d slots) in %d FFNs: %s ... %s",
            memory.num_slots,
            len(sites),
            sites[0].name,
            sites[-1].name,
        )
        return memory
