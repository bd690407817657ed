"""Settings of the input-space visual prompt and how it is built on a backbone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import MISSING

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.input_space.input_prompting import DecoderOnlyInputPrompting, EncoderDecoderInputPrompting
from memvp_lab.methods.input_space.visual_embedding import VisualEmbedding
from memvp_lab.model.prompting import Prompting
from memvp_lab.vision.pooling import GridPool, check_pooling, pooled_tokens
from memvp_lab.vision.projector import Projector
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)

VISUAL_ID_TOKENS = 100  # <vis_extra_id_0..99>, as VL-T5 adds them
VOCAB_SEED = 1234  # seed of the added vocabulary rows (independent of the run's seed)


@dataclass
class InputPromptConfig:
    """How visual features become input tokens.

    Encoder-decoder backbones use VL-T5's visual embedding (``init``, ``vocab_init_std``);
    decoder-only ones a LLaVA-style projector (``projector_hidden``, ``projector_bias``).
    """

    pool_size: Optional[int] = MISSING  # 2D adaptive pooling of the grid to pool_size^2 tokens; null: none
    pool_mode: str = MISSING  # max | avg
    init: str = MISSING  # new Linear layers: normal (N(0, 0.02), BART) | torch (PyTorch default, T5)
    vocab_init_std: float = MISSING  # init of the added vocabulary rows (BART 0.02; T5's nn.Embedding gives 1.0)
    projector_hidden: int = MISSING  # decoder-only: C -> hidden -> d (0: one Linear)
    projector_bias: bool = MISSING

    def validate(self, visual: VisualSpec) -> None:
        check_pooling("method.prompt", self.pool_size, self.pool_mode, visual)

    def num_tokens(self, visual: VisualSpec) -> int:
        return pooled_tokens(visual.num_tokens, self.pool_size)


def add_visual_vocabulary(backbone: Backbone, init_std: float) -> int:
    """Resizes the vocabulary as VL-T5 does and returns its new size.

    VL-T5's tokenizer has 100 ``<extra_id_*>`` sentinels (added when the tokenizer has none, as
    for BART) and 100 ``<vis_extra_id_*>`` tokens; the embedding is resized to the tokenizer's
    length: bart-base 50265 -> 50465, t5-base (32128 rows, 32100 tokens) -> 32200.
    """
    length, sentinels, real = backbone.tokenizer_facts()
    new_tokens = [f"<extra_id_{i}>" for i in range(VISUAL_ID_TOKENS - 1, -1, -1)] if sentinels == 0 else []
    new_tokens += [f"<vis_extra_id_{i}>" for i in range(VISUAL_ID_TOKENS - 1, -1, -1)]
    size = length + len(new_tokens)
    if real:
        backbone.tokenizer.add_special_tokens(
            {"additional_special_tokens": new_tokens}, replace_extra_special_tokens=False
        )
        size = len(backbone.tokenizer)
    model = backbone.model
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(size, mean_resizing=False)
    weight = model.get_input_embeddings().weight
    if size > old and weight.device.type != "meta":
        # Frozen in PEFT runs and not part of adapter checkpoints, so drawn from a fixed seed:
        # every build of the same backbone gets the same rows and a saved adapter reproduces.
        rows = torch.randn(size - old, weight.shape[1], generator=torch.Generator().manual_seed(VOCAB_SEED))
        with torch.no_grad():
            weight[old:] = (rows * init_std).to(weight.dtype)
    return size


def build_input_prompting(config: InputPromptConfig, backbone: Backbone, visual: VisualSpec) -> Prompting:
    """The input-space prompting module for ``backbone``'s family (resizes its vocabulary if encoder-decoder)."""
    config.validate(visual)
    pool = GridPool(config.pool_size, config.pool_mode)
    tokens = config.num_tokens(visual)
    if backbone.is_encoder_decoder:
        if tokens > VISUAL_ID_TOKENS:
            raise ConfigError(
                f"{tokens} visual tokens exceed the {VISUAL_ID_TOKENS} visual-id vocabulary rows; "
                "set method.prompt.pool_size"
            )
        size = add_visual_vocabulary(backbone, config.vocab_init_std)
        norm = "rms" if backbone.model.config.model_type == "t5" else "layer"
        embedding = VisualEmbedding(visual.feature_dim, backbone.hidden_size, norm, config.init)
        log.info("input-space prompt: %d visual tokens after the text; vocabulary resized to %d", tokens, size)
        return EncoderDecoderInputPrompting(backbone.model, embedding, pool, tokens)
    projector = Projector(visual.feature_dim, backbone.hidden_size, config.projector_hidden, config.projector_bias)
    log.info("input-space prompt: %d visual tokens before the text", tokens)
    return DecoderOnlyInputPrompting(projector, pool, tokens)
