"""Memory-space visual prompting: visual key/value entries appended to every chosen FFN.

For an FFN with input ``u`` and activation ``act`` the output becomes

    FFN(u) + s * Dropout(act(u K^T)) V,   K = lam * f(Z) (+) P_k,   V = lam * f(Z) (+) P_v,

with ``f`` the projector, ``Z`` the visual features zero-padded from m tokens to n slots and
``P_k``, ``P_v`` learned position embeddings (per FFN, or one pair shared by all). This is the
FFN with ``K`` appended to its first weight matrix and ``V`` to its second (paper Eq. 8); for a
SwiGLU FFN the gate of the new entries is ``u/|u|^2``, i.e. exactly 1 (paper Eq. 11-12).

The per-sample memory lives only inside ``VisualMemory.bind``: the projector runs once per bind,
each FFN computes its term with matmuls only (the m visual slots per sample, the other slots as
one shared matrix), and nothing stays on any module afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from memvp_lab.methods.memvp.ffn_sites import FFNSite
from memvp_lab.model.prompting import Prompting, linear_flops
from memvp_lab.vision.pooling import GridPool, pooled_tokens
from memvp_lab.vision.projector import Projector

log = logging.getLogger(__name__)


class Ablation(str, Enum):
    """The paper's Table 4 variants."""

    none = "none"  # MemVP as published
    no_visual = "no_visual"  # position embeddings only: no projector, no visual input
    global_feature = "global_feature"  # one mean-pooled visual token instead of the local grid
    concat_position = "concat_position"  # [lam f(Z); P] instead of lam f(Z) + P
    keys_only = "keys_only"  # visual prompts in the keys only (V = P_v)
    values_only = "values_only"  # visual prompts in the values only (K = P_k)


def min_slots(ablation: Ablation, num_visual_tokens: int) -> int:
    """The smallest n that holds the visual prompts (they are zero-padded to n, not cut)."""
    if ablation in (Ablation.no_visual, Ablation.concat_position):
        return 1  # no visual prompts in the padded slots
    return 1 if ablation is Ablation.global_feature else num_visual_tokens


# Observer of retrieval weights: (site index, act(u K^T) of shape (B, L, slots)).
ScoreObserver = Callable[[int, torch.Tensor], None]


@dataclass
class _Bound:
    """The memory of one bound call; discarded when the call ends."""

    prompts: torch.Tensor | None  # (B, tokens, d) visual part of the entries, or None
    observer: ScoreObserver | None
    blocked: torch.Tensor | None  # (B, slots) bool: entries whose activation is forced to 0
    # (position index, batch size) -> split (keys, values); batch size -> (prompts, blocked) repeated
    # for generate()'s beams, which repeat each sample contiguously.
    entries: dict[tuple[int, int], tuple] = field(default_factory=dict)
    expanded: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=dict)
    pending: dict[int, torch.Tensor] = field(default_factory=dict)  # FFN inputs awaiting the output

    def for_batch(self, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Prompts and blocked-entry mask for a call whose batch is ``batch`` rows."""
        if batch not in self.expanded:

            def repeat(t):
                return t if t is None or t.shape[0] == batch else t.repeat_interleave(batch // t.shape[0], dim=0)

            self.expanded[batch] = (repeat(self.prompts), repeat(self.blocked))
        return self.expanded[batch]


class VisualMemory(Prompting):
    """Projector, position embeddings and the FFN hooks that append visual memory.

    Args:
        sites: the FFNs that get memory entries.
        d_model: the language model's width.
        feature_dim: visual feature width C.
        num_visual_tokens: visual tokens m per image.
        n: memory slots (position-embedding length); visual prompts are zero-padded to it.
        lam: scale of the projected visual prompts (lambda).
        scale: output scale s of the memory term.
        dropout: dropout on the activated scores.
        projector_hidden: hidden width of a 2-layer projector, 0 for one linear layer.
        projector_bias: whether projector layers have biases.
        shared_positions: one (P_k, P_v) pair for all FFNs instead of one per FFN.
        ablation: a Table 4 variant.
        pos_k_init_std, pos_v_init_std: normal-init std of P_k and P_v (0 gives zeros).
        pool: 2D pooling of the visual grid before projection (paper Fig. 4 right), or None.
        prompt_tokens: visual entries per FFN when a subclass projects its own views of the
            features (default: the tokens after ``pool``).
    """

    def __init__(
        self,
        sites: Sequence[FFNSite],
        d_model: int,
        feature_dim: int,
        num_visual_tokens: int,
        *,
        n: int,
        lam: float,
        scale: float,
        dropout: float,
        projector_hidden: int,
        projector_bias: bool,
        shared_positions: bool,
        ablation: Ablation,
        pos_k_init_std: float,
        pos_v_init_std: float,
        pool: GridPool | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        super().__init__()
        if not sites:
            raise ValueError("VisualMemory needs at least one FFN site")
        self.ablation = Ablation(ablation)
        self.pool = pool if pool is not None and pool.size else None
        if prompt_tokens is None:
            prompt_tokens = pooled_tokens(num_visual_tokens, self.pool.size if self.pool else None)
        if n < min_slots(self.ablation, prompt_tokens):
            raise ValueError(
                f"n={n} memory slots cannot hold the visual prompts ({min_slots(self.ablation, prompt_tokens)} needed)"
            )
        self.n, self.lam, self.scale, self.dropout = n, lam, scale, dropout
        self.num_visual_tokens = num_visual_tokens  # per image, as the vision encoder gives them
        self.num_prompt_tokens = prompt_tokens  # after pooling: the visual entries per FFN
        self.shared_positions = shared_positions
        num_pos = 1 if shared_positions else len(sites)
        self.pos_k = nn.Parameter(torch.randn(num_pos, n, d_model) * pos_k_init_std)
        self.pos_v = nn.Parameter(torch.randn(num_pos, n, d_model) * pos_v_init_std)
        self.projector = (
            None
            if self.ablation is Ablation.no_visual
            else Projector(feature_dim, d_model, projector_hidden, projector_bias)
        )
        self._sites = tuple(sites)  # a tuple, so the LM's modules are not registered twice
        self._bound: _Bound | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for i, site in enumerate(self._sites):
            self._attach(i, site)

    @property
    def sites(self) -> tuple[FFNSite, ...]:
        return self._sites

    @property
    def grid_tokens(self) -> int:
        """The first visual entries, which form the (pooled) image grid, in row-major order."""
        return self.num_prompt_tokens

    @property
    def num_slots(self) -> int:
        """Memory entries per FFN."""
        return self.n + (self.num_prompt_tokens if self.ablation is Ablation.concat_position else 0)

    # ------------------------------------------------------------------ hooks
    def _attach(self, index: int, site: FFNSite) -> None:
        if site.input_module is site.output_module:

            def add_memory(module, args, kwargs, output):
                if self._bound is None:
                    return None
                u = args[0] if args else next(iter(kwargs.values()))
                return output + self._retrieve(index, site, u)

            self._handles.append(site.output_module.register_forward_hook(add_memory, with_kwargs=True))
            return

        def keep_input(module, args, kwargs):
            if self._bound is not None:
                self._bound.pending[index] = args[0] if args else next(iter(kwargs.values()))
            return None

        def add_memory_later(module, args, kwargs, output):
            if self._bound is None:
                return None
            return output + self._retrieve(index, site, self._bound.pending.pop(index))

        self._handles.append(site.input_module.register_forward_pre_hook(keep_input, with_kwargs=True))
        self._handles.append(site.output_module.register_forward_hook(add_memory_later, with_kwargs=True))

    def visual_flops(self) -> int:
        """The projector over the prompt tokens (the global-feature ablation projects one)."""
        if self.projector is None:
            return 0
        tokens = 1 if self.ablation is Ablation.global_feature else self.num_prompt_tokens
        return linear_flops(self.projector, tokens)

    def remove(self) -> None:
        """Detaches the hooks: the language model behaves exactly as before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # ------------------------------------------------------------- per call
    def project(self, visual: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor | None:
        """``lam * f(Z)`` of shape (B, tokens, d), zero for samples without an image."""
        if self.projector is None:
            return None
        first = self.projector[0]
        z = visual.to(dtype=first.weight.dtype)
        if self.pool is not None:
            z = self.pool(z)
        if self.ablation is Ablation.global_feature:
            z = z.mean(dim=1, keepdim=True)
        prompts = self.lam * self.projector(z)
        if has_image is not None:
            prompts = prompts * has_image.to(prompts.dtype).view(-1, 1, 1)
        return prompts

    @contextmanager
    def bind(
        self,
        visual: torch.Tensor,
        has_image: torch.Tensor | None = None,
        *,
        observer: ScoreObserver | None = None,
        blocked: torch.Tensor | None = None,
    ) -> Iterator[None]:
        """Makes the FFNs retrieve from this batch's visual memory for the duration of the block.

        Args:
            visual: (B, m, C) visual features.
            has_image: (B,) 1 for samples with an image, 0 for text-only ones (zero prompts).
            observer: called with each FFN's activated scores (for visualisation).
            blocked: (B, slots) bool; these entries' activations are set to 0 (knowledge distortion).
        """
        if self._bound is not None:
            raise RuntimeError("VisualMemory.bind is not re-entrant: a call is already bound")
        if visual.dim() != 3 or visual.shape[1] != self.num_visual_tokens:
            raise ValueError(f"visual features must be (B, {self.num_visual_tokens}, C), got {tuple(visual.shape)}")
        self._bound = _Bound(self.project(visual, has_image), observer, blocked)
        try:
            yield
        finally:
            self._bound = None

    def context(self, batch) -> contextlib.AbstractContextManager:
        """The prompting hook of ``VisionLanguageModel``: bind this batch's visual memory."""
        return self.bind(batch.visual, batch.has_image)

    def _split(
        self, position: torch.Tensor, prompts: torch.Tensor | None, visual_in: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Keys or values of one FFN in two parts, slots in order: the per-sample visual entries
        (B or beams, m, d) or None, then the entries every sample shares (slots - m, d).

        Only the m slots that hold visual prompts differ between samples, so only they are built per
        sample; the zero-padded slots are the position embeddings alone and stay one shared matrix.
        Materialising (B, n, d) keys and values per FFN instead cost more time than the matmuls.
        """
        if prompts is None or not visual_in:
            return None, position
        if self.ablation is Ablation.concat_position:
            return prompts, position
        m = prompts.shape[1]
        return prompts + position[:m], position[m:]

    def _kv(self, index: int, batch: int) -> tuple[tuple[torch.Tensor | None, torch.Tensor], ...]:
        """Split keys and values of FFN ``index`` for a call of ``batch`` rows (cached per bind)."""
        bound = self._bound
        p = 0 if self.shared_positions else index
        if (p, batch) not in bound.entries:
            prompts, _ = bound.for_batch(batch)
            bound.entries[(p, batch)] = (
                self._split(self.pos_k[p], prompts, self.ablation is not Ablation.values_only),
                self._split(self.pos_v[p], prompts, self.ablation is not Ablation.keys_only),
            )
        return bound.entries[(p, batch)]

    def _observed(self, index: int, scores: torch.Tensor) -> torch.Tensor:
        """Activated scores (B, L, slots) as the values read them: shown to the observer, blocked
        entries zeroed, dropout applied."""
        bound = self._bound
        if bound.observer is not None:
            bound.observer(index, scores)
        _, blocked = bound.for_batch(scores.shape[0])
        if blocked is not None:
            scores = scores.masked_fill(blocked.unsqueeze(1), 0.0)
        return F.dropout(scores, self.dropout, self.training)

    def _retrieve(self, index: int, site: FFNSite, u: torch.Tensor) -> torch.Tensor:
        """``s * Dropout(act(u K^T)) V`` as one matmul per part: two per FFN when no slot is visual."""
        (k_own, k_shared), (v_own, v_shared) = self._kv(index, u.shape[0])
        scores = torch.matmul(u, k_shared.to(u.dtype).t())
        if k_own is not None:
            scores = torch.cat([torch.matmul(u, k_own.to(u.dtype).transpose(-1, -2)), scores], dim=-1)
        scores = self._observed(index, site.activation(scores))
        if v_own is None:
            out = torch.matmul(scores, v_shared.to(u.dtype))
        else:
            m = v_own.shape[1]
            out = torch.matmul(scores[..., :m], v_own.to(u.dtype)) + torch.matmul(scores[..., m:], v_shared.to(u.dtype))
        return self.scale * out

    def extra_repr(self) -> str:
        return (
            f"sites={len(self._sites)}, n={self.n}, lam={self.lam}, scale={self.scale}, "
            f"dropout={self.dropout}, shared_positions={self.shared_positions}, ablation={self.ablation.value}"
        )


def memory_in(prompting: nn.Module) -> VisualMemory | None:
    """The ``VisualMemory`` of a visual path: the path itself (MemVP) or its ``memory`` part
    (ADEM-VL, whose path also puts a token in the input); None when it has none."""
    if isinstance(prompting, VisualMemory):
        return prompting
    memory = getattr(prompting, "memory", None)
    return memory if isinstance(memory, VisualMemory) else None
