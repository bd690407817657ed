"""memvp_lab: memory-space visual prompting (MemVP) for vision-language fine-tuning."""

__version__ = "0.1.0"
