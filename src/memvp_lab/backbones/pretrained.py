"""Pretrained backbones from a Hugging Face hub id or a local directory."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from memvp_lab.backbones.base import Backbone, TextFormat, check_family, ensure_pad_token

log = logging.getLogger(__name__)


def load_pretrained(name: str, family: str, model_id: str, text: dict | TextFormat | None = None,
                    dtype: str = "float32", attn_implementation: str = "sdpa") -> Backbone:
    """Loads ``model_id`` (hub id, or a local directory in Hugging Face layout).

    Args:
        name: the backbone's config name.
        family: ``decoder_only`` or ``encoder_decoder`` (checked against the loaded model).
        model_id: e.g. ``facebook/bart-base``, ``t5-base``, ``huggyllama/llama-7b`` or a path.
        text: prompt / target layout (see ``TextFormat``).
        dtype: parameter dtype (``float32``, ``bfloat16``, ``float16``).
        attn_implementation: ``sdpa`` or ``eager``.
    """
    try:
        config = AutoConfig.from_pretrained(model_id)
    except OSError as err:
        hint = "" if Path(model_id).exists() else (
            " It is neither a local directory nor a cached hub model; with hub access it is "
            "downloaded, without it set backbone.model_id to a local copy."
        )
        raise OSError(f"backbone.model_id={model_id!r} could not be loaded.{hint}") from err
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(model_id, dtype=getattr(torch, dtype), attn_implementation=attn_implementation)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(model_id))
    fmt = text if isinstance(text, TextFormat) else TextFormat(**(text or {}))
    return check_family(Backbone(name=name, model=model, tokenizer=tokenizer, text=fmt, source=model_id), family)
