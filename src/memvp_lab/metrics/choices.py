"""Multiple-choice answers read from generated text, and their accuracy."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import torch

from memvp_lab.metrics.grouped import GroupedMean

LETTERS = string.ascii_uppercase
_CAPITAL = re.compile(r"[A-Z]")


def choice_index(text: str, num_choices: int) -> int:
    """The option the text names: its first capital letter (A = 0); -1 if it has none or the
    letter is beyond the options (the ScienceQA evaluation's rule)."""
    match = _CAPITAL.search(text)
    if match is None:
        return -1
    index = LETTERS.index(match.group())
    return index if index < num_choices else -1


class ChoiceAccuracy(GroupedMean):
    """Accuracy of predicted option indices against the correct ones, overall and per tag."""

    def update(
        self,
        predicted: Sequence[int],
        correct: Sequence[int],
        tags: Sequence[Sequence[str]] | None = None,
        indices: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        self.add([float(p == c) for p, c in zip(predicted, correct)], tags, indices)
