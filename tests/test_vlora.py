"""VLoRA: the batched per-sample deltas equal merging W + A_b B^T into each sample's own model,
zero B and text-only samples leave the LM unchanged, k / v deltas take grouped-query widths,
layer counts not divisible by the stride work, and the counts are the official code's integers."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import open_dict

from helpers import TINY_CAUSAL_SHAPE, make_batch, make_config
from memvp_lab.errors import ConfigError
from memvp_lab.params import count
from memvp_lab.training.factory import build_model


def build(*overrides: str, arch: dict | None = None, dtype=torch.float32):
    backbone = ["backbone=hf_causal", "backbone.model_id=tiny/qwen2", "backbone.weights=random"] if arch else []
    cfg = make_config(
        ["backbone=tiny_llama", "vision=tiny_random", "method=vlora", "method.every=1", *backbone, *overrides]
    )
    if arch:
        with open_dict(cfg):
            cfg.backbone.architecture = {"model_type": "qwen2", **TINY_CAUSAL_SHAPE, **arch}
    torch.manual_seed(0)
    built = build_model(cfg)
    return built, built.model.to(dtype)


def logits(model, batch, bound: bool = True):
    with torch.no_grad():
        if not bound:
            return model.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with model.prompting.bind(batch.visual, batch.has_image):
            return model.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def randomize_b(model, std: float = 0.5) -> None:
    with torch.no_grad():
        for b in model.prompting.B.values():
            b.normal_(0, std)


def test_batched_deltas_equal_each_sample_with_its_merged_weights():
    """Each sample alone, through a copy of the LM whose linear weights are W + (alpha/r) (A_b B)^T
    and whose FFN gains u (alpha/r) A_b B, gives the batched run's logits (float64)."""
    built, model = build(dtype=torch.float64)
    randomize_b(model)
    batch = make_batch(built.backbone, n=3)
    batch.visual = batch.visual.double()
    batched = logits(model, batch)
    prompting = model.prompting
    with torch.no_grad():
        a = prompting.weights(batch.visual, batch.has_image)
    for i in range(3):
        lm = copy.deepcopy(model.lm)  # the copy carries no hooks of the original's prompting
        modules = dict(model.lm.named_modules())
        names = {id(m): n for n, m in modules.items()}
        own = dict(lm.named_modules())
        for t in prompting.targets:
            with torch.no_grad():
                delta = prompting.scaling * a[t.kind][i, t.index] @ prompting.B[t.kind][t.index]  # (d_in, d_out)
            if t.kind == "m":
                ffn = own[names[id(t.output_module)]]
                ffn.register_forward_hook(lambda m, args, out, d=delta: out + args[0] @ d)
            else:
                own[names[id(t.output_module)]].weight.data += delta.T
        with torch.no_grad():
            alone = lm(input_ids=batch.input_ids[i : i + 1], attention_mask=batch.attention_mask[i : i + 1]).logits
        torch.testing.assert_close(alone[0], batched[i], atol=1e-10, rtol=1e-9)
    assert not torch.allclose(batched, logits(model, batch, bound=False))  # the deltas do something


def test_zero_b_and_text_only_samples_leave_the_lm_unchanged():
    built, model = build()
    batch = make_batch(built.backbone, n=2)
    assert all((b == 0).all() for b in model.prompting.B.values())  # B starts at zero
    assert torch.equal(logits(model, batch), logits(model, batch, bound=False))
    randomize_b(model)
    batch.has_image = torch.tensor([1.0, 0.0])
    with_deltas, plain = logits(model, batch), logits(model, batch, bound=False)
    assert torch.equal(with_deltas[1], plain[1]) and not torch.allclose(with_deltas[0], plain[0])


def test_grouped_query_attention_and_a_stride_that_does_not_divide_the_layers():
    """5 layers, every 2nd: layers 1 and 3 (0-based) get deltas; k / v deltas have the KV width."""
    built, model = build("method.every=2", arch={"num_hidden_layers": 5})
    prompting = model.prompting
    assert sorted({t.name.split(".")[2] for t in prompting.targets}) == ["1", "3"]
    kv_width = TINY_CAUSAL_SHAPE["hidden_size"] // 4 * 2  # 2 of 4 heads
    assert prompting.B["k"].shape == (2, 4, kv_width) and prompting.B["q"].shape == (2, 4, 64)
    randomize_b(model)
    answers = model.generate(make_batch(built.backbone, n=2), max_new_tokens=3, num_beams=2)
    assert len(answers) == 2


def test_a_stride_beyond_the_layers_is_named():
    with pytest.raises(ConfigError, match=r"method.every=4 leaves none of the 2 decoder layers"):
        build("method.every=4")


@pytest.mark.slow  # builds LLaMA-7B on the meta device
def test_trainable_counts_are_the_official_integers():
    # The published generator over CLIP ViT-L/14-336's 576 tokens; its fine-tuning stage trains the LM too.
    official = count("llama_7b", "vlora_official", ["vision=clip_vit_l14_336"])
    assert official["trainable"] == 7_590_307_328
    assert official["trainable"] - 6_738_415_616 == 851_891_712  # the generator (LLaMA-7B has 6,738,415,616)
    # The PEFT setting: a MemVP-sized generator over 256 frozen CLIP ViT-L/14 tokens.
    assert count("llama_7b", "vlora", ["vision.adapters=null"])["trainable"] == 3_467_392
