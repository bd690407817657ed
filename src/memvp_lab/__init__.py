"""memvp_lab: memory-space visual prompting (MemVP) and its baselines, side by side."""

__version__ = "0.1.0"
