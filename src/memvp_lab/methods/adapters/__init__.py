"""Small trainable modules that adapter methods insert into a language model."""

from memvp_lab.methods.adapters.modules import BottleneckAdapter, LowRankGate, PHMAdapter, PHMLinear, init_linear

__all__ = ["BottleneckAdapter", "LowRankGate", "PHMAdapter", "PHMLinear", "init_linear"]
