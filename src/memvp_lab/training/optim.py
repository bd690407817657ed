"""Optimizer parameter groups: weight decay by tensor rank, learning rate by parameter name."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch

from memvp_lab.methods.contract import MethodConfig


def lr_multipliers(names: Sequence[str], method: MethodConfig) -> dict[str, float]:
    """The learning-rate factor of each trainable parameter: the first ``method.lr_multipliers``
    pattern (fnmatch) that matches its name, 1 for none.

    Raises:
        ValueError: a pattern matches no trainable parameter (a typo would silently do nothing).
    """
    patterns = dict(method.lr_multipliers or {})
    factors, used = {}, set()
    for name in names:
        pattern = next((pat for pat in patterns if fnmatch.fnmatchcase(name, pat)), None)
        factors[name] = 1.0 if pattern is None else float(patterns[pattern])
        used.add(pattern)
    unused = sorted(set(patterns) - used)
    if unused:
        raise ValueError(
            f"method.lr_multipliers: {unused} match no trainable parameter (names look like {list(names)[:4]})"
        )
    return factors


def param_groups(named_parameters: Sequence[tuple[str, torch.nn.Parameter]], method: MethodConfig) -> list[dict]:
    """AdamW groups: weight decay on tensors with ndim >= 2 only, lr times ``lr_multipliers``."""
    factors = lr_multipliers([name for name, _ in named_parameters], method)
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in named_parameters:
        groups.setdefault((p.ndim >= 2, factors[name]), []).append(p)
    return [
        {"params": params, "weight_decay": method.weight_decay if decay else 0.0, "lr": method.lr * factor}
        for (decay, factor), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))
    ]
