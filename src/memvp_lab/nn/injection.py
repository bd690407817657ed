"""The one routine that adds a method's modules to a language model and says what it touched.

A module is attached as a child of the module it modifies (so checkpoints name it by place, e.g.
``model.encoder.layers.0.self_attn.adapter.down.weight``) and acts through forward hooks that
stay for the model's lifetime. ``inject`` fails with a clear error when nothing matched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn

from memvp_lab.errors import ConfigError
from memvp_lab.nn.sublayers import Sublayer

log = logging.getLogger(__name__)

# transform(module, x2, x1) -> new x2; x1 is None unless the transform asked for it.
Transform = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _replace_first(output, value):
    if isinstance(output, tuple):
        return (value, *output[1:])
    return value


def _first_arg(args, kwargs):
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def attach_to_sublayer(
    site: Sublayer, attr: str, module: nn.Module, transform: Transform, needs_x1: bool = False
) -> str:
    """Adds ``module`` as ``<site>.<attr>`` and rewrites the sub-layer output with ``transform``.

    Returns the dotted path of the added module (relative to the model the site came from).
    """
    if needs_x1 and site.residual_module is None:
        raise ConfigError(
            f"{site.name}: this method needs the sub-layer's residual input, which "
            f"{site.kind.value} sub-layers of this architecture do not expose"
        )
    site.output_module.add_module(attr, module)
    stash: list[torch.Tensor] = []
    if needs_x1:

        def keep_x1(mod, args, kwargs):
            stash.append(_first_arg(args, kwargs))

        site.residual_module.register_forward_pre_hook(keep_x1, with_kwargs=True)

    def rewrite(mod, args, kwargs, output):
        x2 = output[0] if isinstance(output, tuple) else output
        x1 = stash.pop() if needs_x1 else None
        return _replace_first(output, transform(module, x2, x1))

    site.output_module.register_forward_hook(rewrite, with_kwargs=True)
    return f"{site.name}.{attr}"


def attach_parallel(parent: nn.Module, parent_name: str, attr: str, module: nn.Module) -> str:
    """Adds ``module`` as ``<parent>.<attr>``: ``parent(x) + module(x)`` (a parallel adapter)."""
    parent.add_module(attr, module)

    def add(mod, args, kwargs, output):
        return _replace_first(
            output, (output[0] if isinstance(output, tuple) else output) + module(_first_arg(args, kwargs))
        )

    parent.register_forward_hook(add, with_kwargs=True)
    return f"{parent_name}.{attr}"


def report(method: str, backbone: str, added: Sequence[str], what: str) -> list[str]:
    """Logs what a method added; raises ``ConfigError`` when it added nothing."""
    if not added:
        raise ConfigError(
            f"method={method}: no {what} in backbone={backbone}; check the method's "
            "target settings against the architecture"
        )
    log.info("%s: added %d modules (%s): %s ... %s", method, len(added), what, added[0], added[-1])
    return list(added)
