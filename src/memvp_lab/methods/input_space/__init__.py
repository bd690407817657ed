"""Input-space visual prompting: visual features become extra input tokens of the language model."""

from memvp_lab.methods.input_space.config import InputPromptConfig, build_input_prompting
from memvp_lab.methods.input_space.pooling import GridPool
from memvp_lab.methods.input_space.prompting import DecoderOnlyInputPrompting, EncoderDecoderInputPrompting

__all__ = [
    "DecoderOnlyInputPrompting",
    "EncoderDecoderInputPrompting",
    "GridPool",
    "InputPromptConfig",
    "build_input_prompting",
]
