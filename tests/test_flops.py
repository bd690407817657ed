"""FlopCounterMode agrees with the paper's analytic FLOPs (Eq. 13-15) and their generalisation."""

from __future__ import annotations

import pytest
import torch

from helpers import VISUAL, memvp_config, tiny
from memvp_lab.batch import VLBatch
from memvp_lab.model.flops import (
    MemorySpec,
    analytic_lm_flops,
    count_flops,
    eager_attention,
    measure_lm_flops,
    paper_layer_flops,
)


def test_bart_encoder_matches_paper_eq_13_and_15():
    """A BART encoder layer is the paper's layer: full MHA, FFN width 4d, two FFN matrices."""
    backbone = tiny("bart", hidden_size=64, intermediate_size=256, num_layers=2)
    encoder = backbone.model.model.encoder
    L, d, layers = 11, 64, 2
    ids = torch.randint(5, 200, (1, L))
    with torch.no_grad(), eager_attention(backbone.model):
        plain = count_flops(encoder, input_ids=ids)
    assert plain == layers * paper_layer_flops(L, d, mode="lm")

    model = memvp_config(layers="encoder", n=16).build(backbone, VISUAL).eval()
    visual = torch.randn(1, VISUAL.num_tokens, VISUAL.feature_dim)
    with torch.no_grad(), eager_attention(backbone.model), model.prompting.bind(visual):
        projected = count_flops(model.prompting.project, visual)  # the projector is not LM compute
        with_memory = count_flops(encoder, input_ids=ids)
    assert projected > 0
    assert with_memory == layers * paper_layer_flops(L, d, n=16, mode="memory_space")
    # Eq. 14: what the same prompts would cost in the input space (L + n tokens).
    assert layers * paper_layer_flops(L, d, n=16, mode="input_space") == layers * paper_layer_flops(L + 16, d)


def _batch(prompt_len: int, target_len: int, encoder_decoder: bool) -> VLBatch:
    prompt = torch.randint(5, 200, (1, prompt_len))
    target = torch.randint(5, 200, (1, target_len))
    if encoder_decoder:
        ids, labels = prompt, target
    else:
        ids = torch.cat([prompt, target], dim=1)
        labels = torch.cat([torch.full_like(prompt, -100), target], dim=1)
    return VLBatch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        labels=labels,
        prompt_ids=prompt,
        prompt_mask=torch.ones_like(prompt),
        visual=torch.randn(1, VISUAL.num_tokens, VISUAL.feature_dim),
        has_image=torch.ones(1),
        weights=torch.ones(1),
        indices=torch.zeros(1, dtype=torch.long),
    )


@pytest.mark.parametrize("arch, layers", [("llama", "all"), ("bart", "encoder"), ("t5", "all")])
def test_measured_lm_flops_equal_analytic(arch, layers):
    """GQA, SwiGLU, cross-attention, memory in some stacks and the LM head, counted both ways."""
    backbone = tiny(arch)
    model = memvp_config(layers=layers, n=16).build(backbone, VISUAL)
    sites = model.prompting.sites
    memory = MemorySpec(
        slots=16,
        encoder_sites=sum(s.stack == "encoder" for s in sites),
        decoder_sites=sum(s.stack == "decoder" for s in sites),
    )
    batch = _batch(prompt_len=9, target_len=3, encoder_decoder=backbone.is_encoder_decoder)
    measured = measure_lm_flops(model, batch, max_samples=1)
    assert measured == analytic_lm_flops(backbone.model.config, 9, 3, memory)
    assert model.training  # measuring restores the mode it found


def test_per_sample_flops_ignore_padding():
    backbone = tiny("llama")
    model = memvp_config(n=16).build(backbone, VISUAL)
    a, b = _batch(9, 3, False), _batch(5, 2, False)
    pad = backbone.tokenizer.pad_token_id
    width = a.input_ids.shape[1]
    padded_b = torch.cat([b.input_ids, torch.full((1, width - b.input_ids.shape[1]), pad)], dim=1)
    labels_b = torch.cat([b.labels, torch.full((1, width - b.labels.shape[1]), -100)], dim=1)
    mask_b = torch.cat([b.attention_mask, torch.zeros(1, width - b.input_ids.shape[1], dtype=torch.long)], dim=1)
    pw = a.prompt_ids.shape[1]
    prompt_b = torch.cat([torch.full((1, pw - 5), pad), b.prompt_ids], dim=1)
    prompt_mask_b = torch.cat([torch.zeros(1, pw - 5, dtype=torch.long), b.prompt_mask], dim=1)
    batch = VLBatch(
        input_ids=torch.cat([a.input_ids, padded_b]),
        attention_mask=torch.cat([a.attention_mask, mask_b]),
        labels=torch.cat([a.labels, labels_b]),
        prompt_ids=torch.cat([a.prompt_ids, prompt_b]),
        prompt_mask=torch.cat([a.prompt_mask, prompt_mask_b]),
        visual=torch.cat([a.visual, b.visual]),
        has_image=torch.ones(2),
        weights=torch.ones(2),
        indices=torch.arange(2),
    )
    memory = MemorySpec(slots=16, decoder_sites=2)
    expected = (
        analytic_lm_flops(backbone.model.config, 9, 3, memory) + analytic_lm_flops(backbone.model.config, 5, 2, memory)
    ) / 2
    assert measure_lm_flops(model, batch, max_samples=2) == expected
