"""VLoRA inside the language model: per-sample low-rank deltas on the linear layers of every
s-th layer (official ``modeling_llama_vlora.py``).

For inserted layer j (layers l with (l + 1) % s == 0, j = l // s) and weight type t:

    q, k, v:  proj(h) + (h A_{b,t,j}) (alpha/r B_{t,j})^T         h: the attention's input
    o:        o_proj(a) + (a A_{b,t,j}) (alpha/r B_{t,j})^T          a: the heads' output
    m:        mlp(u) + (u A_{b,t,j}) (alpha/r B_{t,j})^T             a d -> d bypass around the FFN

``A`` is generated per image, ``B`` (r x d_out) is a trained parameter, zero at the start (so the
LM starts unchanged). The delta is never merged into a weight: each call is two batched matmuls,
(B, L, d_in) @ (B, d_in, r) then @ (r, d_out). Grouped-query attention gives k and v their own
output width; samples without an image get A = 0; generate()'s beams repeat each sample's A.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from memvp_lab.methods.vlora.generator import PerceptualWeightsGenerator
from memvp_lab.model.prompting import Prompting


@dataclass(frozen=True)
class Target:
    """One linear map that gets a delta: type ``kind`` of inserted layer ``index``.

    Attributes:
        name: dotted path (for logs).
        kind: ``q``, ``k``, ``v``, ``o`` or ``m``.
        index: j, the inserted layer's position among the inserted layers.
        input_module: receives the map's input as its first argument.
        output_module: the delta is added to its output.
        out_features: d_out.
    """

    name: str
    kind: str
    index: int
    input_module: nn.Module
    output_module: nn.Module
    out_features: int


@dataclass
class _Bound:
    weights: dict[str, torch.Tensor]  # type -> (B, k, d_in, r)
    expanded: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    pending: dict[int, torch.Tensor] = field(default_factory=dict)

    def for_batch(self, kind: str, batch: int) -> torch.Tensor:
        if (kind, batch) not in self.expanded:
            a = self.weights[kind]
            self.expanded[(kind, batch)] = a if a.shape[0] == batch else a.repeat_interleave(batch // a.shape[0], 0)
        return self.expanded[(kind, batch)]


class PerceptualDeltas(Prompting):
    """The generator and the static ``B`` matrices, with hooks on every target.

    Args:
        generator: makes the per-image ``A``.
        targets: the linear maps, each with its type and inserted-layer index.
        rank, alpha: r and alpha (the delta is scaled by alpha / r).
    """

    def __init__(self, generator: PerceptualWeightsGenerator, targets: Sequence[Target], rank: int, alpha: float):
        super().__init__()
        self.generator = generator
        self.scaling = alpha / rank
        k = generator.num_layers
        widths: dict[str, int] = {}
        for t in targets:
            if widths.setdefault(t.kind, t.out_features) != t.out_features:
                raise ValueError(f"type {t.kind} has linear maps of different output widths")
        self.B = nn.ParameterDict({kind: nn.Parameter(torch.zeros(k, rank, d)) for kind, d in widths.items()})
        self._targets = tuple(targets)
        self._bound: _Bound | None = None
        self._handles = []
        for i, target in enumerate(self._targets):
            self._attach(i, target)

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    def _delta(self, target: Target, x: torch.Tensor) -> torch.Tensor:
        a = self._bound.for_batch(target.kind, x.shape[0])[:, target.index].to(x.dtype)  # (B, d_in, r)
        b = self.B[target.kind][target.index].to(x.dtype)  # (r, d_out)
        return torch.matmul(torch.matmul(x, a), b) * self.scaling

    def _attach(self, i: int, target: Target) -> None:
        def first(args, kwargs):
            return args[0] if args else next(iter(kwargs.values()))

        if target.input_module is target.output_module:

            def add(module, args, kwargs, output):
                if self._bound is None:
                    return None
                return output + self._delta(target, first(args, kwargs))

            self._handles.append(target.output_module.register_forward_hook(add, with_kwargs=True))
            return

        def keep(module, args, kwargs):
            if self._bound is not None:
                self._bound.pending[i] = first(args, kwargs)

        def add_later(module, args, kwargs, output):
            if self._bound is None:
                return None
            return output + self._delta(target, self._bound.pending.pop(i))

        self._handles.append(target.input_module.register_forward_pre_hook(keep, with_kwargs=True))
        self._handles.append(target.output_module.register_forward_hook(add_later, with_kwargs=True))

    def visual_flops(self) -> int:
        """The generator, once per image (the deltas run inside the LM: ``delta_flops``)."""
        return self.generator.flops()

    def delta_flops(self, stack: str) -> int:
        """FLOPs per token of the deltas in one stack (``encoder`` / ``decoder``): 2 r (d_in + d_out)
        per map, the two thin matmuls."""
        r = self.generator.rank
        return sum(
            2 * r * (self.generator.inputs[t.kind] + t.out_features)
            for t in self._targets
            if ("encoder" if re.search(r"(^|\.)encoder\.", t.name) else "decoder") == stack
        )

    def weights(self, visual: torch.Tensor, has_image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The per-sample ``A`` of every type, zero for samples without an image."""
        out = self.generator(visual)
        if has_image is not None:
            keep = has_image.view(-1, 1, 1, 1)
            out = {t: a * keep.to(a.dtype) for t, a in out.items()}
        return out

    @contextmanager
    def bind(self, visual: torch.Tensor, has_image: torch.Tensor | None = None) -> Iterator[None]:
        """The targets add this batch's deltas for the duration of the block."""
        if self._bound is not None:
            raise RuntimeError("PerceptualDeltas.bind is not re-entrant: a call is already bound")
        self._bound = _Bound(self.weights(visual, has_image))
        try:
            yield
        finally:
            self._bound = None

    def context(self, batch) -> contextlib.AbstractContextManager:
        return self.bind(batch.visual, batch.has_image)

    def extra_repr(self) -> str:
        return f"targets={len(self._targets)}, scaling={self.scaling}"
