"""Parallel adapters in a ViT's MLPs, trained with MemVP and LLaVA-LoRA on LLaMA (paper App. A.2).

Each transformer block's MLP gets ``x -> MLP(x) + s * W_up Dropout(GELU(W_down x))`` on the same
(normalised) input: ``W_down`` d -> r and ``W_up`` r -> d without biases, ``W_up`` zero-initialised
so the encoder starts unchanged (official MemVP code: r = 12, s = 0.1, dropout 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memvp_lab.nn.injection import attach_parallel


class ParallelAdapter(nn.Module):
    def __init__(self, d_model: int, dim: int, scale: float, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, dim, bias=False)
        self.up = nn.Linear(dim, d_model, bias=False)
        nn.init.zeros_(self.up.weight)
        self.scale, self.dropout = scale, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(F.dropout(F.gelu(self.down(x)), self.dropout, self.training))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, dropout={self.dropout}"


def add_mlp_adapters(vit: nn.Module, dim: int, scale: float, dropout: float) -> list[str]:
    """Adds one adapter per block of a timm ViT (``vit.blocks[i].mlp``); returns their paths.

    Every block gets one, including blocks after the feature layer, which never run: the paper's
    parameter counts include them.
    """
    blocks = getattr(vit, "blocks", None)
    if blocks is None:
        raise ValueError(f"vision.adapters needs a ViT with .blocks, not {type(vit).__name__}")
    width = vit.embed_dim
    return [
        attach_parallel(block.mlp, f"blocks.{i}.mlp", "adapter", ParallelAdapter(width, dim, scale, dropout))
        for i, block in enumerate(blocks)
    ]
