"""Input-space visual prompting for encoder-decoder (VL-T5 style) and decoder-only (LLaVA style) models.

Encoder-decoder: the encoder input is ``[text ; visual]``; visual tokens come from
``VisualEmbedding`` and get no position information: on BART they skip the learned positions and
``layernorm_embedding`` (both applied to text only), on T5 the relative position bias is computed
for text-text pairs and is zero for every pair that involves a visual token.

Decoder-only: projected visual tokens are put in front of the text (``[visual ; text]``); for
left-padded generation the padding stays in front of everything (``[pad ; visual ; text]``).
Samples without an image get their visual tokens masked out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from memvp_lab.methods.input_space.visual_embedding import VisualEmbedding
from memvp_lab.model.prompting import Prompting, linear_flops
from memvp_lab.vision.projector import Projector


class EncoderDecoderInputPrompting(Prompting):
    """Visual tokens appended after the encoder's text tokens (BART, T5)."""

    def __init__(self, lm: nn.Module, embedding: VisualEmbedding, pool: nn.Module, tokens: int) -> None:
        super().__init__()
        encoder = lm.get_encoder()
        self.layout = "bart" if hasattr(encoder, "layernorm_embedding") else "t5" if hasattr(encoder, "block") else None
        if self.layout is None:
            raise ValueError(f"input-space prompting knows BART and T5 encoders, not {type(encoder).__name__}")
        self.embedding = embedding
        self.pool = pool
        self.tokens = tokens  # visual tokens per image after pooling
        self._text_len: int | None = None  # set by lm_inputs, cleared when the call's context ends
        self._keep_positions_text_only(lm)

    def input_tokens(self) -> int:
        return self.tokens

    def visual_flops(self) -> int:
        """The visual embedding's linear maps over the (pooled) visual tokens."""
        return linear_flops(self.embedding, self.tokens)

    def lm_inputs(self, lm, input_ids, attention_mask, batch, *, generation):
        encoder = lm.get_encoder()
        text = encoder.embed_tokens(input_ids)  # BART's scaled embedding applies its own scale
        visual = self.embedding(self.pool(batch.visual), lm.get_input_embeddings().weight)
        self._text_len = input_ids.shape[1]
        mask = torch.cat([attention_mask, attention_mask.new_ones(visual.shape[:2])], dim=1)
        return {"inputs_embeds": torch.cat([text, visual.to(text.dtype)], dim=1), "attention_mask": mask}, 0

    def _keep_positions_text_only(self, lm: nn.Module) -> None:
        """Hooks on the encoder that act while a call is bound (``_text_len`` set)."""
        encoder = lm.get_encoder()
        if self.layout == "bart":

            def text_positions(module, args, output):
                if self._text_len is None:
                    return None
                keep = torch.zeros(output.shape[-2], 1, device=output.device, dtype=output.dtype)
                keep[: self._text_len] = 1
                return output * keep

            def text_layernorm(module, args, output):
                if self._text_len is None:
                    return None
                t = self._text_len
                return torch.cat([output[:, :t], args[0][:, t:]], dim=1)

            encoder.embed_positions.register_forward_hook(text_positions)
            encoder.layernorm_embedding.register_forward_hook(text_layernorm)
        else:

            def text_bias(module, args, kwargs):
                if self._text_len is None or kwargs.get("position_bias") is not None:
                    return None
                hidden = args[0] if args else kwargs["hidden_states"]
                length, t = hidden.shape[1], self._text_len
                bias = module.compute_bias(t, t, device=hidden.device)
                kwargs["position_bias"] = F.pad(bias, (0, length - t, 0, length - t)).to(hidden.dtype)
                return args, kwargs

            attention = encoder.block[0].layer[0].SelfAttention
            attention.register_forward_pre_hook(text_bias, with_kwargs=True)

    @contextlib.contextmanager
    def context(self, batch) -> Iterator[None]:
        try:
            yield
        finally:
            self._text_len = None


class DecoderOnlyInputPrompting(Prompting):
    """LLaVA-style: projected visual tokens in front of the text."""

    def __init__(self, projector: Projector, pool: nn.Module, tokens: int) -> None:
        super().__init__()
        self.projector = projector
        self.pool = pool
        self.tokens = tokens  # visual tokens per image after pooling

    def visual_tokens(self, batch) -> torch.Tensor:
        first = self.projector[0]
        return self.projector(self.pool(batch.visual).to(first.weight.dtype))

    def input_tokens(self) -> int:
        return self.tokens

    def visual_flops(self) -> int:
        """The projector over the (pooled) visual tokens."""
        return linear_flops(self.projector, self.tokens)

    def lm_inputs(self, lm, input_ids, attention_mask, batch, *, generation) -> tuple[dict[str, Any], int]:
        text = lm.get_input_embeddings()(input_ids)
        visual = self.visual_tokens(batch).to(text.dtype)
        visual_mask = batch.has_image.to(attention_mask.dtype).view(-1, 1).expand(-1, visual.shape[1])
        embeds = torch.cat([visual, text], dim=1)
        mask = torch.cat([visual_mask, attention_mask], dim=1)
        if generation:
            # [visual ; pad ; text] -> [pad ; visual ; text]: a stable sort puts masked positions first
            order = torch.sort(mask, dim=1, stable=True).indices
            embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
            mask = mask.gather(1, order)
        return {"inputs_embeds": embeds, "attention_mask": mask}, visual.shape[1]
