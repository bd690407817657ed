"""VLoRA's perceptual-weights generator (official ``llava/model/VLoRA/weights_generater.py``).

    X = W_in F + P_pos                                   F: (B, m, C) visual tokens, P_pos: (m, D)
    Q = queries; repeat depth times:  pre-norm decoder layer (self-attention, cross-attention
        into X, FFN 4D with GELU; no dropout)
    A = reshape(W_head LN(Q))                            one (d_in x r) matrix per query

With ``separate`` (the official ``weights_sep``) each weight type (q, k, v, o, m) has its own
queries, decoder layers and head; otherwise one generator holds the queries of every type.
Initialisation as the official code: truncated-normal (std 0.02) weights and zero biases for
every ``nn.Linear`` (the attention output projections too), LayerNorms 1 / 0, attention input
projections PyTorch's Xavier, queries and position embeddings standard normal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class QueryDecoder(nn.Module):
    """Learned queries read the visual tokens through ``depth`` decoder layers; a head maps each
    query to ``out_features`` values."""

    def __init__(self, width: int, depth: int, heads: int, num_queries: int, out_features: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, width))
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(
                width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_features)

    def flops(self, num_tokens: int) -> int:
        """FLOPs of one image: per layer the queries' self-attention (projections 4qD^2, scores and
        weighted values 2q^2 D), cross-attention into the m tokens (projections 2qD^2 + 2mD^2, 2qmD)
        and FFN (8qD^2) in multiply-adds, then the head; 2 FLOPs per multiply-add."""
        q, width = self.queries.shape
        m = num_tokens
        layer = 14 * q * width**2 + 2 * q * q * width + 2 * m * width**2 + 2 * q * m * width
        return 2 * (len(self.layers) * layer + q * width * self.head.out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, m, D) visual tokens -> (B, num_queries, out_features)."""
        # A copy, not an expanded view: FlopCounterMode's module tracker cannot follow a view of a
        # parameter taken under no_grad.
        q = self.queries.unsqueeze(0).repeat(tokens.shape[0], 1, 1)
        for layer in self.layers:
            q = layer(q, tokens)
        return self.head(self.norm(q))


class PerceptualWeightsGenerator(nn.Module):
    """Per-image low-rank matrices ``A`` for every weight type and inserted layer.

    Args:
        feature_dim, num_tokens: the visual tokens (C, m); the position embeddings fix m.
        width, depth, heads: the decoders' width D, layers and attention heads.
        inputs: weight type -> the input width of its linear layers (d_in).
        num_layers: k, the inserted layers (one query per type and layer).
        rank: r.
        separate: one decoder per type (official ``weights_sep``) or one for all types (then every
            type must have the same input width).
    """

    def __init__(
        self,
        feature_dim: int,
        num_tokens: int,
        *,
        width: int,
        depth: int,
        heads: int,
        inputs: dict[str, int],
        num_layers: int,
        rank: int,
        separate: bool,
    ) -> None:
        super().__init__()
        self.types: Sequence[str] = tuple(inputs)
        self.inputs, self.num_layers, self.rank, self.separate = dict(inputs), num_layers, rank, separate
        self.visual_proj = nn.Linear(feature_dim, width)
        self.pos_embed = nn.Parameter(torch.randn(num_tokens, width))
        if separate:
            self.decoders = nn.ModuleDict(
                {t: QueryDecoder(width, depth, heads, num_layers, d_in * rank) for t, d_in in inputs.items()}
            )
        else:
            widths = set(inputs.values())
            if len(widths) != 1:
                raise ValueError(f"one generator for all types needs one input width, got {inputs}")
            (d_in,) = widths
            self.decoders = nn.ModuleDict(
                {"all": QueryDecoder(width, depth, heads, len(inputs) * num_layers, d_in * rank)}
            )
        self.apply(_init_linear)

    def flops(self) -> int:
        """FLOPs of one image: the input projection, then every decoder."""
        m = self.pos_embed.shape[0]
        proj = 2 * m * self.visual_proj.in_features * self.visual_proj.out_features
        return proj + sum(decoder.flops(m) for decoder in self.decoders.values())

    def forward(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, m, C) -> {type: (B, k, d_in, r)}."""
        tokens = self.visual_proj(visual.to(self.visual_proj.weight.dtype)) + self.pos_embed
        b, k, r = visual.shape[0], self.num_layers, self.rank
        if self.separate:
            return {t: self.decoders[t](tokens).view(b, k, self.inputs[t], r) for t in self.types}
        out = self.decoders["all"](tokens)  # queries type-major: type t, layer j is query t * k + j
        return {t: out[:, i * k : (i + 1) * k].reshape(b, k, self.inputs[t], r) for i, t in enumerate(self.types)}
