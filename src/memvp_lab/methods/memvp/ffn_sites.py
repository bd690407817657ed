"""Where the FFNs of a transformer are, and what their activation is.

MemVP appends key/value entries to every chosen FFN, so it must find, for each FFN, the module
that receives the FFN input ``u`` and the module whose output the memory term is added to:

* LLaMA-family SwiGLU ``mlp`` (gate/up/down projections): one module, ``u`` is its input;
* T5 ``DenseReluDense`` (``wi``/``wo`` or gated ``wi_0``/``wi_1``/``wo``): one module;
* BART layers, whose ``fc1``/``fc2`` sit inline in the layer: ``u`` enters ``fc1`` and the term is
  added to the output of ``fc2`` (before dropout and the residual).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class FFNSite:
    """One FFN of the language model.

    Attributes:
        name: dotted module path of the FFN (or of its layer, for BART).
        stack: ``encoder`` or ``decoder`` (decoder-only models: always ``decoder``).
        input_module: receives the FFN input ``u`` as its first positional argument.
        output_module: the memory term is added to its output.
        activation: the FFN's own activation (SiLU for SwiGLU, GELU for BART, ReLU / GELU for T5).
    """

    name: str
    stack: str
    input_module: nn.Module
    output_module: nn.Module
    activation: Callable[[torch.Tensor], torch.Tensor]


def _stack_of(name: str) -> str:
    return "encoder" if re.search(r"(^|\.)encoder\.", name) else "decoder"


def find_ffn_sites(model: nn.Module) -> list[FFNSite]:
    """All FFNs of ``model`` in module order (encoder before decoder for encoder-decoders)."""
    sites: list[FFNSite] = []
    for name, module in model.named_modules():
        if all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            sites.append(FFNSite(name, _stack_of(name), module, module, module.act_fn))
        elif hasattr(module, "wo") and hasattr(module, "act") and (hasattr(module, "wi") or hasattr(module, "wi_0")):
            sites.append(FFNSite(name, _stack_of(name), module, module, module.act))
        elif all(hasattr(module, a) for a in ("fc1", "fc2", "activation_fn")):
            sites.append(FFNSite(name, _stack_of(name), module.fc1, module.fc2, module.activation_fn))
    return sites


def select_sites(sites: list[FFNSite], layers: str, first: int | None = None, last: int | None = None) -> list[FFNSite]:
    """Keeps the sites of ``layers`` (``encoder``, ``decoder`` or ``all``), then, within each
    stack, those whose index lies in ``[first, last)`` (Python slice bounds; None = open)."""
    chosen = sites if layers == "all" else [s for s in sites if s.stack == layers]
    out = []
    for stack in ("encoder", "decoder"):
        out += [s for s in chosen if s.stack == stack][first:last]
    return out
