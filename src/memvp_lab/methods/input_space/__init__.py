"""Input-space visual prompting: visual features become extra input tokens of the language model."""

from memvp_lab.methods.input_space.input_prompting import DecoderOnlyInputPrompting, EncoderDecoderInputPrompting
from memvp_lab.methods.input_space.prompt_config import InputPromptConfig, build_input_prompting
from memvp_lab.vision.pooling import GridPool

__all__ = [
    "DecoderOnlyInputPrompting",
    "EncoderDecoderInputPrompting",
    "GridPool",
    "InputPromptConfig",
    "build_input_prompting",
]
