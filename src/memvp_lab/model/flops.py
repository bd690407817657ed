"""Language-model FLOPs: measured with ``FlopCounterMode`` and by the paper's formula.

Convention (both ways): one multiply-add = 2 FLOPs; only matrix products count (norms, softmax
and activations are left out, as in paper Eq. 13-15); the vision encoder is not counted.

What is counted per sample is one teacher-forced forward over the prompt and its reference
answer, with the LM head evaluated only where an answer token is predicted. That is exactly the
work greedy generation with a KV cache spends to produce that answer, without padding.

Paper Eq. 13-15, per layer of L tokens, width d, FFN width D = 4d, n memory slots:
    FLOPs_LM = 4 L d (6d + L),   + 4 n d (6d + n + 2L) input-space,   + 4 n d L memory-space.
``analytic_lm_flops`` generalises them to grouped-query attention, SwiGLU, encoder-decoders and
the LM head, and reduces to them in the paper's setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from memvp_lab.batch import VLBatch


@contextmanager
def eager_attention(lm: nn.Module) -> Iterator[None]:
    """Switches to eager attention: FlopCounterMode does not see the CPU SDPA kernel."""
    previous = lm.config._attn_implementation
    if previous != "eager":
        lm.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            lm.set_attn_implementation(previous)


@contextmanager
def counted_attention() -> Iterator[None]:
    """Attention through kernels FlopCounterMode counts: ``nn.MultiheadAttention`` off its fused
    fast path (uncounted) and scaled-dot-product attention in its math form (the CPU flash
    kernel is uncounted). The results are the same computation."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def count_flops(fn, *args, within: str | None = None, **kwargs) -> int:
    """FLOPs of one call, as counted by ``FlopCounterMode``.

    Args:
        within: count only the work done inside the submodule at this path of the called module
            (e.g. ``lm``), including forward hooks on its submodules; by default everything.
    """
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    if within is None:
        return int(counter.get_total_flops())
    # Keys are "<RootClass>.<path>"; nested modules repeat their parents' counts, so only the
    # submodule itself, or else its outermost children that ran, are summed.
    counts = {k.split(".", 1)[1]: sum(v.values()) for k, v in counter.get_flop_counts().items() if "." in k}
    if within in counts:
        return int(counts[within])
    depth = within.count(".") + 1
    return int(sum(v for k, v in counts.items() if k.startswith(within + ".") and k.count(".") == depth))


@contextmanager
def counting(model: nn.Module) -> Iterator[None]:
    """The model in eval mode, its attention in forms FlopCounterMode counts, the prefix cache off.

    Out of inference mode (Lightning evaluates in it): FlopCounterMode's module tracker hooks the
    autograd graph of module inputs that require grad (a fully fine-tuned model's), which
    inference mode does not build; no_grad (inside: leaving inference mode turns grad mode back
    on) still records nothing.
    """
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            eager_attention(model.lm),
            counted_attention(),
            model.prefix_cache_off(),
        ):
            yield
    finally:
        model.train(was_training)


@torch.no_grad()
def measure_lm_flops(model: nn.Module, batch: VLBatch, max_samples: int = 8, within: str | None = "lm") -> float:
    """Mean measured LM FLOPs per sample over the first ``max_samples`` samples of ``batch``.

    Only work inside the language model counts: MemVP's memory term (computed in hooks on the
    LM's FFNs) is included, the projector that maps visual features (run once per call,
    outside the LM) is not. ``within=None`` counts the whole model, projector included.
    """
    with counting(model):
        counts = [count_flops(model, batch.sample(i), within=within) for i in range(min(max_samples, len(batch)))]
    return sum(counts) / len(counts)


@dataclass(frozen=True)
class MemorySpec:
    """Memory entries per FFN and how many FFNs of each stack carry them."""

    slots: int = 0
    encoder_sites: int = 0
    decoder_sites: int = 0


@dataclass(frozen=True)
class DeltaSpec:
    """Per-token FLOPs of low-rank deltas on the linear maps of each stack (VLoRA)."""

    encoder_per_token: int = 0
    decoder_per_token: int = 0


def _attention(lq: int, lk: int, d: int, q_dim: int, kv_dim: int) -> int:
    projections = 2 * lq * d * q_dim + 2 * 2 * lk * d * kv_dim + 2 * lq * q_dim * d
    return projections + 2 * 2 * lq * lk * q_dim  # scores and weighted values


def _ffn(l: int, d: int, ffn_dim: int, gated: bool) -> int:
    return (3 if gated else 2) * 2 * l * d * ffn_dim


def lm_shape(config) -> dict:
    """Width, heads, FFN and layer counts of a LLaMA, BART or T5 config."""
    if config.model_type in ("bart", "mbart"):
        return dict(
            d=config.d_model,
            q_dim=config.d_model,
            kv_dim=config.d_model,
            ffn=config.encoder_ffn_dim,
            dec_ffn=config.decoder_ffn_dim,
            enc_layers=config.encoder_layers,
            dec_layers=config.decoder_layers,
            gated=False,
        )
    if config.model_type in ("t5", "mt5"):
        inner = config.num_heads * config.d_kv
        return dict(
            d=config.d_model,
            q_dim=inner,
            kv_dim=inner,
            ffn=config.d_ff,
            dec_ffn=config.d_ff,
            enc_layers=config.num_layers,
            dec_layers=config.num_decoder_layers,
            gated=bool(config.is_gated_act),
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return dict(
        d=config.hidden_size,
        q_dim=config.num_attention_heads * head_dim,
        kv_dim=kv_heads * head_dim,
        ffn=config.intermediate_size,
        dec_ffn=config.intermediate_size,
        enc_layers=0,
        dec_layers=config.num_hidden_layers,
        gated=True,
    )


def analytic_lm_flops(
    config,
    prompt_len: int,
    target_len: int,
    memory: MemorySpec = MemorySpec(),
    visual_tokens: int = 0,
    include_head: bool = True,
    deltas: DeltaSpec = DeltaSpec(),
) -> int:
    """FLOPs of one teacher-forced sample (see module docstring).

    Args:
        config: the Hugging Face config of a LLaMA-family, BART or T5 model.
        prompt_len: prompt tokens (decoder-only) or encoder input tokens (encoder-decoder).
        target_len: target tokens (the decoder input of encoder-decoders).
        memory: MemVP memory entries.
        visual_tokens: input-space visual tokens joined to the prompt (0 for MemVP).
        include_head: add the LM head at the predicted positions.
        deltas: parameter-space low-rank deltas (VLoRA), per token of each stack.
    """
    s = lm_shape(config)
    d = s["d"]
    total = 0
    if config.is_encoder_decoder:
        le = prompt_len + visual_tokens
        ld = target_len
        enc = _attention(le, le, d, s["q_dim"], s["kv_dim"]) + _ffn(le, d, s["ffn"], s["gated"])
        dec = (
            _attention(ld, ld, d, s["q_dim"], s["kv_dim"])
            + _attention(ld, le, d, s["q_dim"], s["kv_dim"])
            + _ffn(ld, d, s["dec_ffn"], s["gated"])
        )
        total += s["enc_layers"] * enc + s["dec_layers"] * dec
        total += 4 * memory.slots * d * (le * memory.encoder_sites + ld * memory.decoder_sites)
        total += le * deltas.encoder_per_token + ld * deltas.decoder_per_token
    else:
        l = prompt_len + visual_tokens + target_len
        layer = _attention(l, l, d, s["q_dim"], s["kv_dim"]) + _ffn(l, d, s["ffn"], s["gated"])
        total += s["dec_layers"] * layer + 4 * memory.slots * d * l * memory.decoder_sites
        total += l * deltas.decoder_per_token
    if include_head:
        total += 2 * target_len * d * config.vocab_size
    return total


@torch.no_grad()
def measure_visual_flops(model: nn.Module, batch: VLBatch, max_samples: int = 1) -> float:
    """Mean FLOPs per sample of the work outside the language model and the vision tower: the
    projectors or generator that turn visual features into what the LM reads."""
    counts = []
    with counting(model):
        for i in range(min(max_samples, len(batch))):
            sample = batch.sample(i)
            outside = count_flops(model, sample) - count_flops(model, sample, within="lm")
            if getattr(model, "vision_tower", None) is not None:
                outside -= count_flops(model, sample, within="vision_tower")
            counts.append(outside)
    return sum(counts) / len(counts)


def paper_layer_flops(L: int, d: int, n: int = 0, mode: str = "lm") -> int:
    """Paper Eq. 13 (``lm``), Eq. 13 + 14 (``input_space``) or Eq. 13 + 15 (``memory_space``)."""
    base = 4 * L * d * (6 * d + L)
    if mode == "lm":
        return base
    if mode == "input_space":
        return base + 4 * n * d * (6 * d + n + 2 * L)
    if mode == "memory_space":
        return base + 4 * n * d * L
    raise ValueError(f"mode={mode!r}: expected lm, input_space or memory_space")
