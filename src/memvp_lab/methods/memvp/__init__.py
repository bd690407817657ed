"""MemVP: visual prompts as extra key/value entries of the FFNs (Jie et al., ICML 2024)."""

from memvp_lab.methods.memvp.ffn_sites import FFNSite, find_ffn_sites, select_sites
from memvp_lab.methods.memvp.memory import Ablation, VisualMemory
from memvp_lab.methods.memvp.method import LayerSet, MemVPConfig

__all__ = ["Ablation", "FFNSite", "LayerSet", "MemVPConfig", "VisualMemory", "find_ffn_sites", "select_sites"]
