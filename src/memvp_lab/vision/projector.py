"""The projector ``f`` that maps visual features to the language model's width."""

from __future__ import annotations

from torch import nn


class Projector(nn.Sequential):
    """``Linear(C, d)``, or ``Linear(C, h) -> SiLU -> Linear(h, d)`` when ``hidden > 0``.

    Weights are Xavier-uniform and biases zero, as in the official MemVP code.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, bias: bool = True) -> None:
        if hidden > 0:
            layers = [nn.Linear(in_dim, hidden, bias=bias), nn.SiLU(), nn.Linear(hidden, out_dim, bias=bias)]
        else:
            layers = [nn.Linear(in_dim, out_dim, bias=bias)]
        super().__init__(*layers)
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
