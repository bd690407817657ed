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

    The defaults pass the text through unchanged.
    """

    def context(self, batch) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

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
