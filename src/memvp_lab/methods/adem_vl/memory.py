"""ADEM-VL's visual memory: what each FFN adds to its output.

With ``u`` an FFN's input (the query, "from MLP in") and the visual memory of M entries

    Z' = beta * f([Z ; pool_1(Z) ; ...]),   K = Z' + P_k,   V = Z' + P_v   (one pair for all FFNs),

the FFN output gains (official ``adem/adapter.py``, ``Adapter.forward`` with ``hidden_dim=0``)

    S = SiLU(u) SiLU(K)^T                         (no softmax, no 1/sqrt(d): "parameter-free")
    S = S * [S >= tau],  tau = the int(gamma M)-th smallest entry of S per text token
    out = alpha * S V

The views of ``Z`` are average-pooled in the encoder's feature space, before the projector (as
the official code does; the paper's Algorithm 1 projects first). ``SiLU(K)`` and ``V`` are computed
once per bound call and shared by every FFN. ``similarity="act_product"`` gives MemVP's
``act(u K^T)`` instead (the paper's Table VI baseline), and ``gamma=0`` keeps every entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F

from memvp_lab.methods.memvp.ffn_sites import FFNSite
from memvp_lab.methods.memvp.memory import Ablation, VisualMemory
from memvp_lab.vision.pooling import GridPool, pooled_tokens


class Similarity(str, Enum):
    silu_both = "silu_both"  # ADEM-VL: SiLU(u) SiLU(K)^T
    act_product = "act_product"  # MemVP: act(u K^T), act the FFN's own activation


def dropped_entries(num_entries: int, gamma: float) -> int:
    """How many of each text token's entries the adaptive fusion zeroes: int(gamma * M)."""
    return int(gamma * num_entries)


def adaptive_fusion(scores: torch.Tensor, drop: int) -> torch.Tensor:
    """``scores`` with each row's ``drop`` lowest entries set to 0 (ties with the threshold are
    kept). The threshold is the (drop+1)-th smallest value, found by selection rather than a sort;
    the mask carries no gradient, the kept entries do."""
    if drop <= 0:
        return scores
    tau = scores.detach().kthvalue(drop + 1, dim=-1, keepdim=True).values
    return scores * (scores.detach() >= tau).to(scores.dtype)


class AdaptiveMemory(VisualMemory):
    """ADEM-VL's memory on the chosen FFNs (see the module docstring).

    Args:
        sites: the FFNs whose output gets the visual term.
        d_model, feature_dim, num_visual_tokens: the LM width, the feature width C, tokens m per image.
        pool_sizes: the views of the visual grid, in order: None for the tokens as they are, k for
            an average pool to k x k (official: [None, 8], 256 + 64 = 320 entries).
        beta: scale of the projected features (official 0.01).
        alpha: scale of the added term (official 0.1).
        gamma: share of each token's entries dropped by the adaptive fusion (official 0.1).
        similarity: ``silu_both`` (ADEM-VL) or ``act_product`` (MemVP).
        projector_hidden, projector_bias, shared_positions, pos_k_init_std, pos_v_init_std,
        dropout: as for MemVP (official: 128, biases, shared, 0.02, 0, no dropout).
    """

    def __init__(
        self,
        sites: Sequence[FFNSite],
        d_model: int,
        feature_dim: int,
        num_visual_tokens: int,
        *,
        pool_sizes: Sequence[int | None],
        beta: float,
        alpha: float,
        gamma: float,
        similarity: Similarity,
        projector_hidden: int,
        projector_bias: bool,
        shared_positions: bool,
        pos_k_init_std: float,
        pos_v_init_std: float,
        dropout: float = 0.0,
    ) -> None:
        entries = sum(pooled_tokens(num_visual_tokens, size) for size in pool_sizes)
        super().__init__(
            sites,
            d_model,
            feature_dim,
            num_visual_tokens,
            n=entries,
            lam=beta,
            scale=alpha,
            dropout=dropout,
            projector_hidden=projector_hidden,
            projector_bias=projector_bias,
            shared_positions=shared_positions,
            ablation=Ablation.none,
            pos_k_init_std=pos_k_init_std,
            pos_v_init_std=pos_v_init_std,
            prompt_tokens=entries,
        )
        self.views = torch.nn.ModuleList(GridPool(size, "avg") for size in pool_sizes)
        self.pool_sizes = list(pool_sizes)
        self.gamma = gamma
        self.drop = dropped_entries(entries, gamma)
        self.similarity = Similarity(similarity)

    @property
    def grid_tokens(self) -> int:
        """The first view's entries: the image grid the heat maps are drawn on."""
        return pooled_tokens(self.num_visual_tokens, self.pool_sizes[0])

    def project(self, visual: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor:
        """``beta * f([Z ; pool(Z) ...])`` of shape (B, M, d), zero for samples without an image."""
        first = self.projector[0]
        z = visual.to(dtype=first.weight.dtype)
        prompts = self.lam * self.projector(torch.cat([view(z) for view in self.views], dim=1))
        if has_image is not None:
            prompts = prompts * has_image.to(prompts.dtype).view(-1, 1, 1)
        return prompts

    def _entries(self, index: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys as the similarity reads them, values), each (batch, M, d), once per bound call."""
        bound = self._bound
        p = 0 if self.shared_positions else index
        if (p, batch) not in bound.entries:
            prompts, _ = bound.for_batch(batch)
            keys = prompts + self.pos_k[p]
            if self.similarity is Similarity.silu_both:
                keys = F.silu(keys)
            bound.entries[(p, batch)] = (keys, prompts + self.pos_v[p])
        return bound.entries[(p, batch)]

    def _retrieve(self, index: int, site: FFNSite, u: torch.Tensor) -> torch.Tensor:
        keys, values = self._entries(index, u.shape[0])
        if self.similarity is Similarity.silu_both:
            scores = torch.matmul(F.silu(u), keys.to(u.dtype).transpose(-1, -2))
        else:
            scores = site.activation(torch.matmul(u, keys.to(u.dtype).transpose(-1, -2)))
        scores = self._observed(index, adaptive_fusion(scores, self.drop))
        return self.scale * torch.matmul(scores, values.to(u.dtype))

    def extra_repr(self) -> str:
        return (
            f"sites={len(self.sites)}, entries={self.n}, views={self.pool_sizes}, beta={self.lam}, "
            f"alpha={self.scale}, gamma={self.gamma} (drops {self.drop}), similarity={self.similarity.value}, "
            f"shared_positions={self.shared_positions}"
        )
