"""ADEM-VL: the FFN term equals the official forward written out in float64, the adaptive fusion
equals the official sort-based threshold, every ingredient's switch changes what it should, and
the trainable counts are the official code's exact integers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import make_batch, make_config
from memvp_lab.methods.adem_vl.memory import adaptive_fusion, dropped_entries
from memvp_lab.params import count
from memvp_lab.training.factory import build_model


def build(arch: str, *overrides: str, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = make_config([f"backbone={arch}", "vision=tiny_random", "method=adem_vl", *overrides])
    built = build_model(cfg)
    return built, built.model.to(dtype)


def test_adaptive_fusion_keeps_what_the_official_sort_keeps():
    torch.manual_seed(0)
    scores = torch.randn(3, 5, 40)
    scores[0, 0, :4] = scores[0, 0, 4]  # ties with the threshold are kept
    drop = dropped_entries(40, 0.1)
    assert drop == 4
    tau = scores.sort(dim=-1).values[..., drop : drop + 1]  # official: sort ascending, index int(gamma M)
    expected = scores * (scores >= tau)
    assert torch.equal(adaptive_fusion(scores, drop), expected)
    assert ((adaptive_fusion(scores, drop) == 0).sum(-1) >= drop).all()
    assert torch.equal(adaptive_fusion(scores, 0), scores)  # gamma = 0: fusion off
    assert dropped_entries(320, 0.1) == 32 and dropped_entries(65, 0.1) == 6


def test_the_ffn_term_is_the_official_forward_in_float64():
    """Every FFN's output gains alpha * fuse(SiLU(u) SiLU(K)^T) V with K, V from both views of the
    grid, pooled before one projector, shared by all layers."""
    built, model = build("tiny_llama", dtype=torch.float64)
    memory = model.prompting.memory
    batch = make_batch(built.backbone, n=2)
    batch.visual = batch.visual.double()
    mlp = model.lm.model.layers[1].mlp
    seen = {}
    handle = mlp.register_forward_hook(lambda m, args, out: seen.update(u=args[0], out=out))
    with torch.no_grad():
        model(batch)
    handle.remove()
    u, out = seen["u"], seen["out"]
    with torch.no_grad():
        base = mlp.down_proj(F.silu(mlp.gate_proj(u)) * mlp.up_proj(u))  # the FFN alone
        z = batch.visual
        grid = z.transpose(1, 2).reshape(2, z.shape[2], 7, 7)
        pooled = F.adaptive_avg_pool2d(grid, 3).flatten(2).transpose(1, 2)  # half of 7: 3x3
        p = memory.projector
        projected = p[2](F.silu(p[0](torch.cat([z, pooled], dim=1))))
        prompts = 0.01 * projected * batch.has_image.double().view(-1, 1, 1)
        keys, values = prompts + memory.pos_k[0], prompts + memory.pos_v[0]
        scores = F.silu(u) @ F.silu(keys).transpose(1, 2)
        tau = scores.sort(dim=-1).values[..., int(0.1 * 58) : int(0.1 * 58) + 1]
        expected = base + 0.1 * (scores * (scores >= tau)) @ values
    assert memory.n == 49 + 9
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-9)


def test_each_switch_changes_what_it_names():
    built, model = build("tiny_llama")
    batch = make_batch(built.backbone, n=2)

    def first_layer_input(m):
        seen = []
        handle = m.lm.model.layers[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
        with torch.no_grad():
            m(batch)
        handle.remove()
        return seen[0]

    text = batch.input_ids.shape[1]
    assert first_layer_input(model) == text + 1  # the [CLS] stand-in joins the input
    _, off = build("tiny_llama", "method.cls_token=none")
    assert first_layer_input(off) == text and off.prompting.token is None
    _, single = build("tiny_llama", "method.pool_sizes=[null]")
    assert single.prompting.memory.n == 49
    _, grids = build("tiny_llama", "method.pool_sizes=[null,4,2]")
    assert grids.prompting.memory.n == 49 + 16 + 4
    _, memvp_like = build("tiny_llama", "method.similarity=act_product", "method.gamma=0")
    assert memvp_like.prompting.memory.drop == 0


def test_text_only_samples_read_position_entries_and_no_visual_token():
    built, model = build("tiny_llama")
    batch = make_batch(built.backbone, n=2)
    batch.has_image = torch.tensor([1.0, 0.0])
    prompts = model.prompting.memory.project(batch.visual, batch.has_image)
    assert prompts[1].abs().sum() == 0 and prompts[0].abs().sum() > 0
    inputs, added = model.prompting.lm_inputs(model.lm, batch.input_ids, batch.attention_mask, batch, generation=False)
    assert added == 1 and inputs["attention_mask"][:, 0].tolist() == [1, 0]  # the token is masked out


@pytest.mark.parametrize("arch", ["tiny_bart", "tiny_t5"])
def test_encoder_decoder_choices_place_memory_in_the_encoder_with_per_layer_positions(arch):
    overrides = ["method.layers=encoder", "method.shared_positions=false"]
    built, model = build(arch, *overrides)
    memory = model.prompting.memory
    encoder_layers = model.lm.config.num_layers if arch == "tiny_t5" else model.lm.config.encoder_layers
    assert len(memory.sites) == encoder_layers and memory.pos_k.shape[0] == encoder_layers
    answers = model.generate(make_batch(built.backbone), max_new_tokens=3, num_beams=2)
    assert len(answers) == 3


@pytest.mark.slow  # builds LLaMA-7B / 13B and BART/T5 on the meta device
def test_trainable_counts_are_the_official_integers():
    assert count("llama_7b", "adem_vl")["trainable"] == 4_530_432  # ADEM-VL build.py: "4.53M"
    assert count("llama_13b", "adem_vl")["trainable"] == 5_449_984  # "5.45M"
    # The paper's Table VI path on LLaMA-7B: a MemVP-like baseline (256 entries, no [CLS]) 3.4M,
    # + [CLS] 4.0M, + multiscale 4.5M (the similarity and the fusion add nothing).
    baseline = ["method.pool_sizes=[null]", "method.cls_token=none", "method.similarity=act_product", "method.gamma=0"]
    assert count("llama_7b", "adem_vl", baseline)["trainable"] == 3_346_560
    assert count("llama_7b", "adem_vl", baseline[:1])["trainable"] == 4_006_144
    # BART/T5 (encoder FFNs, per-layer positions, M = 49 + 9 on CLIP RN101 grids)
    for backbone, layers, d in (("bart_base", 6, 768), ("t5_base", 12, 768)):
        projector = 2048 * 128 + 128 + 128 * d + d
        assert count(backbone, "adem_vl")["trainable"] == 2 * layers * 58 * d + 2 * projector
