"""VLoRA (arXiv 2405.20339): parameter-space visual prompting. A perceptual-weights generator
turns each image's features into low-rank weight deltas of the LM's linear layers; no visual token
enters the sequence."""

from memvp_lab.methods.vlora.method import VLoRAConfig

__all__ = ["VLoRAConfig"]
