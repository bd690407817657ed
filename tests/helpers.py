"""Builders shared by several test modules."""

from __future__ import annotations

from memvp_lab.backbones.tiny import build_tiny
from memvp_lab.methods.base import Schedule
from memvp_lab.methods.memvp import Ablation, LayerSet, MemVPConfig
from memvp_lab.vision.spec import VisualSpec

FAMILY = {"llama": "decoder_only", "bart": "encoder_decoder", "t5": "encoder_decoder"}


def tiny(arch: str, **kwargs):
    return build_tiny(f"tiny_{arch}", FAMILY[arch], arch, **kwargs)


def memvp_config(**overrides) -> MemVPConfig:
    values = dict(
        name="memvp",
        lr=1e-2,
        weight_decay=0.0,
        warmup_steps=0,
        schedule=Schedule.constant,
        n=16,
        lam=0.01,
        scale=1.0,
        dropout=0.0,
        projector_hidden=0,
        projector_bias=True,
        shared_positions=False,
        layers=LayerSet.all,
        ablation=Ablation.none,
        pos_k_init_std=0.02,
        pos_v_init_std=0.02,
    )
    values.update(overrides)
    return MemVPConfig(**values)


VISUAL = VisualSpec(feature_dim=32, num_tokens=8)
