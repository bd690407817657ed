"""How a method's visual features reach the language model: the ``Prompting`` interface."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn


class Prompting(nn.Module):
    """The visual path of a method; every parameter of it trains.

    Two hooks, both used around every language-model call (training forward and ``generate``):

    * ``context(batch)``: a context manager active during the call (MemVP binds the batch's
      visual memory to the FFNs; input-space prompting on BART/T5 keeps positions text-only);
    * ``lm_inputs(...)``: the keyword arguments of the call and how many tokens were put in front
      of the text (their labels are ignored).

    The defaults pass the text through unchanged. ``visual_flops()`` states the per-image work.
    """

    def context(self, batch) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def input_tokens(self) -> int:
        """Visual tokens per image this path puts into the LM's input (0: none)."""
        return 0

    def visual_flops(self) -> int:
        """FLOPs per image of the work outside the language model (projectors, generators), by
        formula; ``memvp_lab.model.flops.measure_visual_flops`` counts the same work."""
        return 0

    def lm_inputs(
        self, lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch, *, generation: bool
    ) -> tuple[dict[str, Any], int]:
        """Arguments for ``lm(...)`` / ``lm.generate(...)`` and the number of prepended positions.

        Args:
            lm: the language model.
            input_ids, attention_mask: the text (right-padded for training, left-padded for
                decoder-only generation).
            batch: the ``VLBatch`` (visual features, ``has_image``).
            generation: True when the call is ``generate``.
        """
        return {"input_ids": input_ids, "attention_mask": attention_mask}, 0


def linear_flops(module: nn.Module, tokens: int) -> int:
    """FLOPs of every ``nn.Linear`` inside ``module`` applied once to ``tokens`` vectors (a
    projector: each layer sees every token)."""
    return sum(2 * tokens * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))
