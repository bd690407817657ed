"""Pretrained backbones from a Hugging Face hub id or a local directory, or their architecture
with random weights (``weights=random``: parameter counts, speed benchmarks, no download)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from memvp_lab.backbones.backbone import Backbone, TextFormat, check_family, ensure_pad_token, resolve_text_format
from memvp_lab.errors import ConfigError

log = logging.getLogger(__name__)


def _random_model(
    name: str, architecture: dict | None, dtype: torch.dtype, attn_implementation: str | None, device: str
):
    if not architecture:
        raise ConfigError(
            f"backbone={name} has no backbone.architecture block to build random weights from; "
            "set backbone.weights=pretrained"
        )
    fields = {k: v for k, v in architecture.items() if k != "tokenizer"}
    config = AutoConfig.for_model(**fields)
    if attn_implementation is not None:  # None: transformers' choice for the family
        config._attn_implementation = attn_implementation
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device(device):
        model = auto.from_config(config, dtype=dtype)
    return model


def load_pretrained(
    name: str,
    family: str,
    model_id: str,
    text: dict | TextFormat | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = "sdpa",
    weights: str = "pretrained",
    architecture: dict | None = None,
    device: str = "cpu",
) -> Backbone:
    """Loads ``model_id`` (hub id, or a local directory in Hugging Face layout).

    Args:
        name: the backbone's config name.
        family: ``decoder_only`` or ``encoder_decoder`` (checked against the loaded model).
        model_id: e.g. ``facebook/bart-base``, ``t5-base``, ``huggyllama/llama-7b`` or a path.
        text: prompt / target layout (see ``TextFormat``).
        dtype: parameter dtype (``float32``, ``bfloat16``, ``float16``).
        attn_implementation: ``sdpa``, ``eager``, or None for transformers' choice (sdpa where the
            family supports it, eager otherwise, e.g. Gemma 2).
        weights: ``pretrained`` (from ``model_id``) or ``random`` (from ``architecture``, with a
            small stand-in tokenizer; nothing is downloaded).
        architecture: the hub model's config fields (``model_type`` first) plus
            ``tokenizer: {length, sentinels}`` of its tokenizer.
        device: where a random model is built (``meta``: shapes only, no memory).
    """
    fmt = text if isinstance(text, TextFormat) else TextFormat(**(text or {}))
    torch_dtype = getattr(torch, dtype)
    if weights == "random":
        from memvp_lab.backbones.tiny import tiny_tokenizer

        model = _random_model(name, architecture, torch_dtype, attn_implementation, device)
        style = {"bart": "bart", "t5": "t5"}.get(model.config.model_type, "llama")
        tokenizer = tiny_tokenizer(style)
        backbone = Backbone(
            name=name,
            model=model,
            tokenizer=tokenizer,
            text=resolve_text_format(fmt, tokenizer),
            source=f"random ({model_id} architecture)",
            # The hub tokenizer's facts when the block states them; else the embedding rows.
            hub_tokenizer=dict(architecture.get("tokenizer") or {"length": model.config.vocab_size, "sentinels": 0}),
        )
        return check_family(backbone, family)
    if weights != "pretrained":
        raise ConfigError(f"backbone.weights={weights!r}: expected pretrained or random")
    try:
        config = AutoConfig.from_pretrained(model_id)
    except OSError as err:
        hint = (
            ""
            if Path(model_id).exists()
            else (
                " It is neither a local directory nor a cached hub model; with hub access it is "
                "downloaded, without it set backbone.model_id to a local copy (or backbone.weights=random)."
            )
        )
        raise OSError(f"backbone.model_id={model_id!r} could not be loaded.{hint}") from err
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(model_id, dtype=torch_dtype, attn_implementation=attn_implementation)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(model_id))
    backbone = Backbone(
        name=name, model=model, tokenizer=tokenizer, text=resolve_text_format(fmt, tokenizer), source=model_id
    )
    return check_family(backbone, family)
