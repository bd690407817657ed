"""ADEM-VL's typed config: its settings, their checks, and the prompting it builds (the adaptive
visual memory in the FFNs plus, optionally, one projected visual token in the input)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import torch
from omegaconf import MISSING
from torch import nn

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.adem_vl.memory import AdaptiveMemory, Similarity
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.methods.input_space.input_prompting import DecoderOnlyInputPrompting, EncoderDecoderInputPrompting
from memvp_lab.methods.memvp.ffn_sites import chosen_sites
from memvp_lab.methods.memvp.method import LayerSet, check_layers
from memvp_lab.methods.registry import register_method
from memvp_lab.model.prompting import Prompting
from memvp_lab.vision.pooling import MeanPool, check_pooling, pooled_tokens
from memvp_lab.vision.projector import Projector
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)


class ClsToken(str, Enum):
    mean = "mean"  # the mean visual token through a second projector, one input embedding
    none = "none"  # no visual token in the input


class ProjectedToken(nn.Module):
    """The [CLS] token's projector, called as input-space prompting calls its embedding."""

    def __init__(self, projector: Projector) -> None:
        super().__init__()
        self.projector = projector

    def forward(self, features: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        return self.projector(features.to(self.projector[0].weight.dtype))


class AdemVLPrompting(Prompting):
    """The adaptive memory (bound around every call) and the optional input token."""

    def __init__(self, memory: AdaptiveMemory, token: Prompting | None) -> None:
        super().__init__()
        self.memory = memory
        self.token = token

    def input_tokens(self) -> int:
        return self.token.input_tokens() if self.token is not None else 0

    def visual_flops(self) -> int:
        """The memory's projector over its M entries, plus the input token's projector."""
        return self.memory.visual_flops() + (self.token.visual_flops() if self.token is not None else 0)

    @contextlib.contextmanager
    def context(self, batch):
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.memory.context(batch))
            if self.token is not None:
                stack.enter_context(self.token.context(batch))
            yield

    def lm_inputs(self, lm, input_ids, attention_mask, batch, *, generation) -> tuple[dict[str, Any], int]:
        if self.token is None:
            return super().lm_inputs(lm, input_ids, attention_mask, batch, generation=generation)
        return self.token.lm_inputs(lm, input_ids, attention_mask, batch, generation=generation)


@register_method("adem_vl")
@dataclass
class AdemVLConfig(MethodConfig):
    """ADEM-VL (arXiv 2410.17779); every ingredient has a switch (paper Table VI)."""

    # views of the visual grid: null = the tokens as they are, k = average-pooled to k x k, half = to
    # half the grid's side (16x16 -> 8x8, the official second scale)
    pool_sizes: list[Any] = field(default_factory=lambda: [None, "half"])
    beta: float = MISSING  # scale of the projected features
    alpha: float = MISSING  # scale of the added term
    gamma: float = MISSING  # share of each token's entries dropped (0: adaptive fusion off)
    similarity: Similarity = MISSING  # silu_both (ADEM-VL) | act_product (MemVP)
    cls_token: ClsToken = MISSING  # mean | none
    dropout: float = 0.0
    projector_hidden: int = MISSING
    projector_bias: bool = MISSING
    shared_positions: bool = MISSING
    layers: LayerSet = MISSING
    first_layer: Optional[int] = None
    last_layer: Optional[int] = None
    pos_k_init_std: float = MISSING
    pos_v_init_std: float = MISSING

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if not self.pool_sizes:
            raise ConfigError("method.pool_sizes is empty: list at least one view (null: the tokens as they are)")
        for size in self.pool_sizes:
            if not (size is None or size == "half" or (isinstance(size, int) and not isinstance(size, bool))):
                raise ConfigError(f"method.pool_sizes entry {size!r}: expected null, half or a grid side k (k x k)")
            side = self.grid_side(size, visual)
            if side is not None and not visual.grid:
                raise ConfigError(
                    f"method.pool_sizes={list(self.pool_sizes)} average-pools a 2D grid, but this vision config "
                    "gives a sequence of tokens (vision.grid=false); set method.pool_sizes=[null]"
                )
            check_pooling("method.pool_sizes entry", side, "avg", visual)
        check_layers(self.layers, is_encoder_decoder)
        for key in ("beta", "alpha"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"method.{key}={getattr(self, key)} must be positive")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"method.gamma={self.gamma} must be in [0, 1): the share of entries dropped")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"method.dropout={self.dropout} must be in [0, 1)")

    @staticmethod
    def grid_side(size, visual: VisualSpec) -> int | None:
        """A ``pool_sizes`` entry as a grid side (None: no pooling)."""
        if size == "half":
            return max(1, math.isqrt(visual.num_tokens) // 2)
        return size

    def views(self, visual: VisualSpec) -> list[int | None]:
        return [self.grid_side(size, visual) for size in self.pool_sizes]

    def entries(self, visual: VisualSpec) -> int:
        """M: the visual entries every FFN reads."""
        return sum(pooled_tokens(visual.num_tokens, size) for size in self.views(visual))

    def prompting(self, backbone: Backbone, visual: VisualSpec) -> AdemVLPrompting:
        sites = chosen_sites(
            backbone.model, "adem_vl", backbone.name, self.layers.value, self.first_layer, self.last_layer
        )
        memory = AdaptiveMemory(
            sites,
            backbone.hidden_size,
            visual.feature_dim,
            visual.num_tokens,
            pool_sizes=self.views(visual),
            beta=self.beta,
            alpha=self.alpha,
            gamma=self.gamma,
            similarity=self.similarity,
            projector_hidden=self.projector_hidden,
            projector_bias=self.projector_bias,
            shared_positions=self.shared_positions,
            pos_k_init_std=self.pos_k_init_std,
            pos_v_init_std=self.pos_v_init_std,
            dropout=self.dropout,
        )
        token = None
        if self.cls_token is ClsToken.mean:
            projector = Projector(visual.feature_dim, backbone.hidden_size, self.projector_hidden, self.projector_bias)
            if backbone.is_encoder_decoder:
                token = EncoderDecoderInputPrompting(backbone.model, ProjectedToken(projector), MeanPool(), 1)
            else:
                token = DecoderOnlyInputPrompting(projector, MeanPool(), 1)
        log.info(
            "ADEM-VL: %d visual entries (views %s) in %d FFNs (%s ... %s), similarity %s, drops %d per token%s",
            memory.n,
            self.views(visual),
            len(sites),
            sites[0].name,
            sites[-1].name,
            self.similarity.value,
            memory.drop,
            ", one visual token in the input" if token is not None else "",
        )
        return AdemVLPrompting(memory, token)
