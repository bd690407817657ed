"""Bottleneck adapters, Compacter's PHM layers and VL-PET's low-rank gate.

All use ``gelu_new`` (GELU, tanh approximation) as the VL-Adapter / VL-PET code does.
Initialisation follows the backbone family of the reference code (``init``):

* ``normal``: N(0, 0.02) weights, zero biases (what BART's ``_init_weights`` gives new layers);
* ``torch``: PyTorch's default Linear init (T5's ``_init_weights`` leaves new layers alone).

``zero_up`` zero-initialises the up-projection (VL-PET's T5 scripts), making the module start as
identity (adapters) or a constant 0.5 gate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INITS = ("normal", "torch")


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def init_linear(layer: nn.Linear, init: str) -> nn.Linear:
    if init not in INITS:
        raise ValueError(f"init={init!r}: expected one of {INITS}")
    if init == "normal":
        nn.init.normal_(layer.weight, std=0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return layer


class BottleneckAdapter(nn.Module):
    """``Linear(d, h) -> gelu_new -> Linear(h, d)``, both with bias.

    ``forward(y)`` returns the adapter's output alone; the caller adds the residual. VL-PET's
    multi-head down-projection (``Nh`` Linear(d, h/Nh) whose outputs are concatenated) is the same
    function as one Linear(d, h) with the same parameter count, so it is built as one.
    """

    def __init__(self, d_model: int, hidden: int, init: str = "normal", zero_up: bool = False) -> None:
        super().__init__()
        self.down = init_linear(nn.Linear(d_model, hidden), init)
        self.up = init_linear(nn.Linear(hidden, d_model), init)
        if zero_up:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.up(gelu_new(self.down(y)))


class LowRankGate(nn.Module):
    """VL-PET-large's gate ``sigmoid(W_up gelu_new(W_down x + b) + b)``, one value per token and channel."""

    def __init__(self, d_model: int, rank: int, init: str = "normal", zero_up: bool = False) -> None:
        super().__init__()
        self.body = BottleneckAdapter(d_model, rank, init, zero_up)

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x1))


class PHMLinear(nn.Module):
    """Parameterised hypercomplex multiplication layer (Compacter): ``y = x H + b`` with
    ``H = sum_i kron(rule_i, W_i)``, ``rule`` of shape (n, n, n) and ``W`` of shape (n, in/n, out/n).

    ``rule`` is N(0, 0.01), ``W`` Glorot-uniform per slice, ``b`` zero (the Compacter defaults
    without shared or factorised rules).
    """

    def __init__(self, in_features: int, out_features: int, n: int) -> None:
        super().__init__()
        if in_features % n or out_features % n:
            raise ValueError(f"PHMLinear: {in_features} and {out_features} must be divisible by n={n}")
        self.n = n
        self.rule = nn.Parameter(torch.randn(n, n, n) * 0.01)
        self.weight = nn.Parameter(torch.empty(n, in_features // n, out_features // n))
        bound = math.sqrt(6.0 / (in_features // n + out_features // n))
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def matrix(self) -> torch.Tensor:
        """H, shape (in, out)."""
        return sum(torch.kron(self.rule[i], self.weight[i]) for i in range(self.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix() + self.bias


class PHMAdapter(nn.Module):
    """Compacter's adapter: ``PHMLinear(d, h) -> gelu_new -> PHMLinear(h, d)`` (output only, no residual)."""

    def __init__(self, d_model: int, hidden: int, n: int) -> None:
        super().__init__()
        self.down = PHMLinear(d_model, hidden, n)
        self.up = PHMLinear(hidden, d_model, n)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.up(gelu_new(self.down(y)))
