"""VL-PET (Hu et al., 2023), the "large" design the MemVP paper compares with.

Encoder, at the self-attention and FFN sub-layers of every layer (``x1`` the sub-layer's residual
input, ``x2`` its output)::

    y   = x2 + W_up gelu_new(W_down x2 + b) + b         (multi-head down-projection, Nh heads)
    G   = sigmoid(W_gu gelu_new(W_gd x1 + b) + b)        (low-rank gate, per token and channel)
    x2 <- s * G * y                                      (then the layer's own dropout and residual)

Decoder: a parallel adapter on the value projection of every cross-attention,
``V = W_v enc + W_u gelu_new(W_d enc + b) + b``. The encoder's layer norms also train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING
from torch import nn

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.adapters import BottleneckAdapter, LowRankGate
from memvp_lab.methods.adapters.modules import INITS
from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import register_method
from memvp_lab.nn.injection import attach_parallel, attach_to_sublayer, report
from memvp_lab.nn.sublayers import Kind, find_sublayers_or_fail, select
from memvp_lab.vision.spec import VisualSpec


class GatedAdapter(nn.Module):
    def __init__(self, d_model: int, hidden: int, gate_rank: int, scale: float, init: str, zero_up: bool) -> None:
        super().__init__()
        self.adapter = BottleneckAdapter(d_model, hidden, init, zero_up)
        self.gate = LowRankGate(d_model, gate_rank, init, zero_up)
        self.scale = scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _gated(module: GatedAdapter, x2, x1):
    y = x2 + module.adapter(x2)
    return module.scale * module.gate(x1) * y


@register_method("vl_pet")
@dataclass
class VLPETConfig(InputSpaceMethodConfig):
    hidden: int = MISSING  # encoder adapter width d
    heads: int = MISSING  # Nh: the down-projection is Nh heads of width d / Nh (one Linear of width d)
    gate_rank: int = MISSING  # r_g of the large gate
    scale: float = MISSING  # s
    decoder_hidden: int = MISSING  # width of the cross-attention value adapter (Nh = 1)
    init: str = MISSING  # normal (BART) | torch (T5)
    zero_up: bool = MISSING  # zero-init the up-projections (VL-PET's T5 scripts)

    families: ClassVar[tuple[str, ...]] = ("encoder_decoder",)

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if self.hidden <= 0 or self.hidden % self.heads:
            raise ConfigError(f"method.hidden={self.hidden} must be a positive multiple of method.heads={self.heads}")
        if self.init not in INITS:
            raise ConfigError(f"method.init={self.init!r}: expected one of {INITS}")

    def inject(self, backbone: Backbone) -> list[str]:
        d = backbone.hidden_size
        sublayers = find_sublayers_or_fail(backbone.model, self.name, backbone.name)
        added = [
            attach_to_sublayer(
                site,
                "vl_pet",
                GatedAdapter(d, self.hidden, self.gate_rank, self.scale, self.init, self.zero_up),
                _gated,
                needs_x1=True,
            )
            for site in select(sublayers, {"encoder"}, {Kind.self_attn, Kind.ffn})
        ]
        for site in select(sublayers, {"decoder"}, {Kind.cross_attn}):
            attn = site.output_module
            proj_name = "v_proj" if hasattr(attn, "v_proj") else "v"
            added.append(
                attach_parallel(
                    getattr(attn, proj_name),
                    f"{site.name}.{proj_name}",
                    "value_adapter",
                    BottleneckAdapter(d, self.decoder_hidden, self.init, self.zero_up),
                )
            )
        return report(self.name, backbone.name, added, "encoder sub-layers and cross-attention value projections")
