"""VL-T5's visual embedding: how BART/T5 baselines turn grid features into input tokens.

    v_i = Norm_f(W_f z_i + b_f) + Norm_p(W_p box_i + b_p) + E_img[0] + E_vocab[V - 1 - i]

``box_i`` is all zeros for grid features (so the box branch is a learned constant), ``E_img`` an
image-order embedding (2 images), and ``E_vocab[V-1-i]`` the language model's own (shared, here
frozen) embedding row of the i-th added ``<vis_extra_id_i>`` token. ``Norm`` is ``nn.LayerNorm``
for BART and an RMS norm without bias for T5.
"""

from __future__ import annotations

import torch
from torch import nn

from memvp_lab.methods.adapters.modules import init_linear


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)


class VisualEmbedding(nn.Module):
    """Args:
    feature_dim: visual feature width (2048 for CLIP-RN101 grids).
    d_model: the language model's width.
    norm: ``layer`` (BART) or ``rms`` (T5).
    init: ``normal`` (BART) or ``torch`` (T5), see ``memvp_lab.methods.adapters``.
    n_images: rows of the image-order embedding.
    """

    def __init__(self, feature_dim: int, d_model: int, norm: str, init: str, n_images: int = 2) -> None:
        super().__init__()
        make_norm = {"layer": lambda: nn.LayerNorm(d_model), "rms": lambda: RMSNorm(d_model)}[norm]
        self.feat = init_linear(nn.Linear(feature_dim, d_model), init)
        self.feat_norm = make_norm()
        self.box = init_linear(nn.Linear(5, d_model), init)
        self.box_norm = make_norm()
        self.image_order = nn.Embedding(n_images, d_model)
        if init == "normal":
            nn.init.normal_(self.image_order.weight, std=0.02)

    def forward(self, features: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
        """``features`` (B, m, C), ``vocab`` the LM's input embedding matrix (V, d) -> (B, m, d)."""
        b, m, _ = features.shape
        feat = self.feat_norm(self.feat(features.to(self.feat.weight.dtype)))
        box = self.box_norm(self.box(feat.new_zeros(b, m, 5)))
        order = vocab[vocab.shape[0] - 1 - torch.arange(m, device=vocab.device)]  # <vis_extra_id_0> is the last row
        return feat + box + self.image_order.weight[0] + order.to(feat.dtype)
