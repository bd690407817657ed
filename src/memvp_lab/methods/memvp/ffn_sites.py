"""Where the FFNs of a transformer are, and what their activation is.

MemVP appends key/value entries to every chosen FFN, so it must find, for each FFN, the module
that receives the FFN input ``u`` and the module whose output the memory term is added to:

* gated ``mlp`` modules (SwiGLU in LLaMA, Mistral, Qwen, OLMo; GeGLU in Gemma): separate
  ``gate_proj``/``up_proj`` or one fused ``gate_up_proj`` (Phi-3), then ``down_proj``; one module,
  ``u`` is its input, the activation is its ``act_fn`` / ``activation_fn``;
* T5 ``DenseReluDense`` (``wi``/``wo`` or gated ``wi_0``/``wi_1``/``wo``): one module;
* two-layer FFNs whose ``fc1``/``fc2`` (BART layers, Phi-1/2 ``mlp``) or ``c_fc``/``c_proj``
  (StarCoder2 ``mlp``) are children: ``u`` enters the first and the term is added to the output
  of the second (before dropout and the residual).

An FFN of another form (e.g. a mixture of experts) is not recognised; ``describe_unrecognised``
names what the model has instead, for the error that stops the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from memvp_lab.errors import ConfigError


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


def _activation(module: nn.Module, *names: str):
    return next((getattr(module, a) for a in names if callable(getattr(module, a, None))), None)


def _layer(module: nn.Module, attr: str) -> nn.Module | None:
    """A child layer; a mixture of experts holds its projections as stacked parameters instead."""
    child = getattr(module, attr, None)
    return child if isinstance(child, nn.Module) else None


def _gated_site(name: str, module: nn.Module) -> FFNSite | None:
    """A gated FFN: ``down(act(gate(u)) * up(u))`` with separate or fused gate/up projections."""
    has_gate_up = _layer(module, "gate_up_proj") or (_layer(module, "gate_proj") and _layer(module, "up_proj"))
    act = _activation(module, "act_fn", "activation_fn")
    if has_gate_up and _layer(module, "down_proj") and act is not None:
        return FFNSite(name, _stack_of(name), module, module, act)
    return None


def _two_layer_site(name: str, module: nn.Module) -> FFNSite | None:
    """``second(act(first(u)))`` with the two layers as children: BART, Phi-1/2, StarCoder2."""
    act = _activation(module, "activation_fn", "act")
    for first, second in (("fc1", "fc2"), ("c_fc", "c_proj")):
        if act is not None and _layer(module, first) and _layer(module, second):
            return FFNSite(name, _stack_of(name), getattr(module, first), getattr(module, second), act)
    return None


def find_ffn_sites(model: nn.Module) -> list[FFNSite]:
    """All FFNs of ``model`` in module order (encoder before decoder for encoder-decoders)."""
    sites: list[FFNSite] = []
    for name, module in model.named_modules():
        if hasattr(module, "wo") and hasattr(module, "act") and (hasattr(module, "wi") or hasattr(module, "wi_0")):
            sites.append(FFNSite(name, _stack_of(name), module, module, module.act))
            continue
        site = _gated_site(name, module) or _two_layer_site(name, module)
        if site is not None:
            sites.append(site)
    return sites


KNOWN_FORMS = (
    "gate_proj/up_proj (or gate_up_proj) + down_proj + act_fn (gated: LLaMA, Mistral, Qwen, Gemma, Phi-3, OLMo), "
    "T5 DenseReluDense (wi/wo + act), fc1/fc2 or c_fc/c_proj + an activation (two-layer: BART, Phi-2, StarCoder2)"
)


def describe_unrecognised(model: nn.Module) -> str:
    """What the model's layers hold where an FFN was expected, e.g. ``mlp: MixtralSparseMoeBlock(gate, experts)``."""
    seen: dict[str, str] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("mlp", "feed_forward", "ffn", "block_sparse_moe", "DenseReluDense") and leaf not in seen:
            children = ", ".join(n for n, _ in module.named_children()) or "no children"
            seen[leaf] = f"{leaf}: {type(module).__name__}({children})"
    return "; ".join(seen.values()) or f"no module named mlp/feed_forward/ffn in {type(model).__name__}"


def select_sites(sites: list[FFNSite], layers: str, first: int | None = None, last: int | None = None) -> list[FFNSite]:
    """Keeps the sites of ``layers`` (``encoder``, ``decoder`` or ``all``), then, within each
    stack, those whose index lies in ``[first, last)`` (Python slice bounds; None = open)."""
    chosen = sites if layers == "all" else [s for s in sites if s.stack == layers]
    out = []
    for stack in ("encoder", "decoder"):
        out += [s for s in chosen if s.stack == stack][first:last]
    return out


def chosen_sites(
    model: nn.Module, method: str, backbone: str, layers: str, first: int | None, last: int | None
) -> list[FFNSite]:
    """``select_sites`` of ``find_ffn_sites``, raising a ``ConfigError`` that names what the model
    has (no FFN recognised) or the layer range to widen (none selected)."""
    found = find_ffn_sites(model)
    if not found:
        raise ConfigError(
            f"method={method} found no FFN it can add visual memory to in backbone={backbone} "
            f"({type(model).__name__}): it has {describe_unrecognised(model)}; it knows {KNOWN_FORMS}"
        )
    sites = select_sites(found, layers, first, last)
    if not sites:
        raise ConfigError(
            f"method.layers={layers} (first_layer={first}, last_layer={last}) matched none of the "
            f"{len(found)} FFNs of backbone={backbone}; widen the layer range"
        )
    return sites
