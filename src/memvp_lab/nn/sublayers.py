"""The sub-layers of a transformer (self-attention, cross-attention, FFN) where adapters go.

Adapter methods act on a sub-layer's output ``x2`` before its dropout and residual add, and some
(VL-PET's gates) also read the sub-layer's residual-stream input ``x1``. For each sub-layer this
module finds the module whose output is ``x2`` (first element when it returns a tuple) and the
module whose first input is ``x1``:

=========  ======================  ======================  =======================
family     self-attention          cross-attention         FFN
=========  ======================  ======================  =======================
BART       ``self_attn``           ``encoder_attn``        ``fc2`` (``x1`` enters ``fc1``)
T5         ``SelfAttention``       ``EncDecAttention``     ``DenseReluDense``
LLaMA [*]  ``self_attn``           --                      ``mlp``
=========  ======================  ======================  =======================

[*] and every decoder layer with ``self_attn`` and ``mlp`` children: Mistral, Qwen2/2.5/3,
Gemma 2/3, Phi-3, OLMo, ...

For T5 (pre-norm) ``x1`` is the input of the ``T5Layer*`` wrapper, before its layer norm; for
BART (post-norm) it is the sub-layer's own input. LLaMA's FFN input is normalised, so its ``x1``
is not available (``residual_module`` is None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from torch import nn

from memvp_lab.errors import ConfigError


class Kind(str, Enum):
    self_attn = "self_attn"
    cross_attn = "cross_attn"
    ffn = "ffn"


@dataclass(frozen=True)
class Sublayer:
    """One sub-layer.

    Attributes:
        name: dotted path of ``output_module`` inside the model.
        stack: ``encoder`` or ``decoder`` (decoder-only models: ``decoder``).
        kind: self-attention, cross-attention or FFN.
        output_module: its output (element 0 of a tuple) is ``x2``.
        residual_module: its first input is ``x1`` (None when the model has no such module).
    """

    name: str
    stack: str
    kind: Kind
    output_module: nn.Module
    residual_module: nn.Module | None


def _stack_of(name: str) -> str:
    return "encoder" if re.search(r"(^|\.)encoder\.", name) else "decoder"


def _site(prefix: str, attr: str, kind: Kind, parent: nn.Module, residual: nn.Module | None) -> Sublayer:
    name = f"{prefix}.{attr}" if prefix else attr
    return Sublayer(name, _stack_of(name), kind, getattr(parent, attr), residual)


def find_sublayers(model: nn.Module) -> list[Sublayer]:
    """All sub-layers of ``model`` in module order."""
    out: list[Sublayer] = []
    for name, module in model.named_modules():
        if hasattr(module, "SelfAttention"):  # T5LayerSelfAttention
            out.append(_site(name, "SelfAttention", Kind.self_attn, module, module))
        elif hasattr(module, "EncDecAttention"):  # T5LayerCrossAttention
            out.append(_site(name, "EncDecAttention", Kind.cross_attn, module, module))
        elif hasattr(module, "DenseReluDense"):  # T5LayerFF
            out.append(_site(name, "DenseReluDense", Kind.ffn, module, module))
        elif all(hasattr(module, a) for a in ("self_attn", "fc1", "fc2")):  # BART layers
            out.append(_site(name, "self_attn", Kind.self_attn, module, module.self_attn))
            if hasattr(module, "encoder_attn"):
                out.append(_site(name, "encoder_attn", Kind.cross_attn, module, module.encoder_attn))
            out.append(_site(name, "fc2", Kind.ffn, module, module.fc1))
        elif hasattr(module, "self_attn") and hasattr(module, "mlp"):  # LLaMA-family decoder layers
            out.append(_site(name, "self_attn", Kind.self_attn, module, module))
            out.append(_site(name, "mlp", Kind.ffn, module, None))
    return out


KNOWN_LAYOUTS = (
    "T5 layers (SelfAttention / EncDecAttention / DenseReluDense), BART layers (self_attn, fc1, fc2) "
    "and decoder layers with self_attn and mlp children (LLaMA, Mistral, Qwen, Gemma, Phi-3, OLMo)"
)


def find_sublayers_or_fail(model: nn.Module, method: str, backbone: str) -> list[Sublayer]:
    """``find_sublayers``, raising a ``ConfigError`` that names the layouts looked for when empty."""
    found = find_sublayers(model)
    if not found:
        raise ConfigError(
            f"method={method} found no attention or FFN sub-layer in backbone={backbone} "
            f"({type(model).__name__}); it knows {KNOWN_LAYOUTS}"
        )
    return found


def select(sublayers: list[Sublayer], stacks: set[str] | None = None, kinds: set[Kind] | None = None) -> list[Sublayer]:
    return [s for s in sublayers if (stacks is None or s.stack in stacks) and (kinds is None or s.kind in kinds)]
