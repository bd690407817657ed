"""Exact-match accuracy (GQA as VL-T5 / LXMERT score it: no normalisation at all)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from memvp_lab.metrics.grouped import GroupedMean


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the stripped prediction equals one of the accepted answers."""
    return 1.0 if prediction.strip() in answers else 0.0


class ExactMatch(GroupedMean):
    def update(
        self,
        predictions: Sequence[str],
        answers: Sequence[Sequence[str]],
        groups: Sequence[str] | None = None,
        indices: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        memberships = [[g] for g in groups] if groups is not None else None
        self.add([exact_match(p, a) for p, a in zip(predictions, answers)], memberships, indices)
