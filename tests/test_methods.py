"""Every method on every tiny backbone: what trains, generation, sequence length, checkpoints
and the position rules of the input-space prompt."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from helpers import changed_by_training, expected_trainable, make_batch, make_config
from memvp_lab.errors import CheckpointMismatch, ConfigError
from memvp_lab.methods.registry import methods, runs_on
from memvp_lab.training.checkpoint import load_trainable, save_trainable
from memvp_lab.training.factory import build_backbone, build_model, method_and_visual
from memvp_lab.training.optim import param_groups
from memvp_lab.vision.spec import VisualSpec

ARCHS = ("tiny_bart", "tiny_t5", "tiny_llama")
# Every registered method on every tiny backbone of a family it runs on (a method registered
# through an entry point is tested too).
CASES = [(m, a) for a in ARCHS for m in methods() if runs_on(m, a != "tiny_llama")]
VISUAL = VisualSpec(feature_dim=256, num_tokens=49)  # vision=tiny_random: a 7x7 grid


def build(method: str, arch: str, seed: int = 0, *overrides: str):
    cfg = make_config([f"method={method}", f"backbone={arch}", "vision=tiny_random", *overrides])
    torch.manual_seed(seed)
    config = instantiate(cfg.method, _convert_="all")
    backbone = build_backbone(cfg.backbone)
    return config, backbone, config.build(backbone, VISUAL)


# A constant input gets no gradient: the box branch sees all-zero boxes for grid features.
NO_GRADIENT = {"prompting.embedding.box.weight"}


@pytest.mark.parametrize("method,arch", CASES, ids=lambda x: str(x))
def test_only_intended_tensors_change(method, arch):
    _, backbone, model = build(method, arch)
    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert trainable == {n for n, _ in model.named_parameters() if expected_trainable(method, n, model)}
    changed = changed_by_training(model, make_batch(backbone))
    assert changed == trainable - NO_GRADIENT


@pytest.mark.parametrize("method,arch", CASES, ids=lambda x: str(x))
def test_generation_and_sequence_length(method, arch):
    _, backbone, model = build(method, arch)
    model.eval()
    batch = make_batch(backbone)
    for beams in (1, 2):
        answers = model.generate(batch, max_new_tokens=3, num_beams=beams)
        assert len(answers) == len(batch) and all(isinstance(a, str) for a in answers)
    # Length of the sequence the first transformer layer sees in a training forward.
    lm = model.lm
    first = lm.get_encoder() if lm.config.is_encoder_decoder else lm.model
    layer = first.block[0] if hasattr(first, "block") else first.layers[0]
    seen = []
    handle = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(batch)
    handle.remove()
    text = batch.input_ids.shape[1]
    # input visual tokens: none (MemVP, VLoRA), 49 (LLaVA: the 7x7 grid), 1 (ADEM-VL's [CLS] stand-in),
    # 36 (VL-T5 pools the grid to 6x6)
    added = {"memvp": 0, "vlora": 0, "llava_lora": 49, "adem_vl": 1}.get(method, 36)
    assert seen[0] == text + added


@pytest.mark.parametrize("method,arch", CASES, ids=lambda x: str(x))
def test_checkpoint_round_trip_reproduces_logits(method, arch, tmp_path):
    config, backbone, model = build(method, arch, 0)
    with torch.no_grad():  # move the trainable tensors away from their initial values
        for _, p in model.trainable_named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    batch = make_batch(backbone)
    with torch.no_grad():
        expected = model(batch)
    save_trainable(model, tmp_path, config, base_model=backbone.source)
    meta = json.loads((tmp_path / "trainable.json").read_text())
    assert meta["method"] == method and meta["parameters"] == model.parameter_counts()["trainable"]
    _, _, other = build(method, arch, 1)  # same frozen LM (tiny weights have their own seed), new trainables
    other.eval()
    with torch.no_grad():
        assert not torch.equal(other(batch), expected)
    load_trainable(other, tmp_path, method)
    with torch.no_grad():
        assert torch.equal(other(batch), expected)


def test_checkpoint_of_another_method_is_refused(tmp_path):
    config, _, model = build("vl_adapter", "tiny_bart")
    save_trainable(model, tmp_path, config)
    _, _, memvp = build("memvp", "tiny_bart")
    with pytest.raises(CheckpointMismatch, match="method=vl_adapter"):
        load_trainable(memvp, tmp_path, "memvp")
    with pytest.raises(CheckpointMismatch, match="missing"):
        load_trainable(memvp, tmp_path)


def test_bart_visual_tokens_skip_positions_and_embedding_norm():
    _, backbone, model = build("vl_adapter", "tiny_bart")
    model.eval()
    batch = make_batch(backbone)
    encoder = model.lm.get_encoder()
    seen = {}
    handle = encoder.layers[0].register_forward_pre_hook(lambda m, args: seen.update(h=args[0]))
    with torch.no_grad(), model.prompting.context(batch):
        inputs, _ = model.prompting.lm_inputs(model.lm, batch.input_ids, batch.attention_mask, batch, generation=False)
        model.lm(**inputs, decoder_input_ids=torch.zeros_like(batch.input_ids[:, :1]))
    handle.remove()
    t = batch.input_ids.shape[1]
    text_expected = encoder.layernorm_embedding(
        encoder.embed_tokens(batch.input_ids) + encoder.embed_positions(batch.input_ids)
    )
    torch.testing.assert_close(seen["h"][:, :t], text_expected)
    torch.testing.assert_close(seen["h"][:, t:], inputs["inputs_embeds"][:, t:])  # untouched visual tokens


def test_t5_relative_bias_only_between_text_tokens():
    _, backbone, model = build("lora", "tiny_t5")
    model.eval()
    batch = make_batch(backbone)
    attention = model.lm.get_encoder().block[0].layer[0].SelfAttention
    seen = {}
    handle = attention.register_forward_hook(lambda m, a, out: seen.update(bias=out[1]))
    with torch.no_grad():
        model(batch)
    handle.remove()
    t = batch.input_ids.shape[1]
    bias = seen["bias"]
    assert bias.shape[-1] == t + 36
    torch.testing.assert_close(bias[..., :t, :t], attention.compute_bias(t, t))
    assert torch.count_nonzero(bias[..., t:, :]) == 0 and torch.count_nonzero(bias[..., :, t:]) == 0
    # Outside a bound call the hooks are inert: plain text keeps T5's usual bias.
    handle = attention.register_forward_hook(lambda m, a, out: seen.__setitem__("plain", out[1]))
    with torch.no_grad():
        model.lm(input_ids=batch.input_ids, decoder_input_ids=batch.input_ids[:, :1])
    handle.remove()
    torch.testing.assert_close(seen["plain"], attention.compute_bias(t, t))


def test_methods_refuse_backbones_they_do_not_fit():
    with pytest.raises(ConfigError, match="method=vl_pet needs an encoder-decoder"):
        build("vl_pet", "tiny_llama")
    with pytest.raises(ConfigError, match="method=llava_lora needs a decoder-only"):
        build("llava_lora", "tiny_t5")


def test_injection_that_matches_nothing_fails_clearly():
    from memvp_lab.backbones.backbone import Backbone, TextFormat

    _, backbone, _ = build("memvp", "tiny_llama")
    config = instantiate(make_config(["method=vl_adapter"]).method, _convert_="all")
    bare = Backbone(
        name="bare",
        model=torch.nn.Sequential(torch.nn.Linear(4, 4)),
        tokenizer=backbone.tokenizer,
        text=TextFormat(),
        source="test",
    )
    with pytest.raises(
        ConfigError, match=r"method=vl_adapter found no attention or FFN sub-layer in backbone=bare \(Sequential\)"
    ):
        config.inject(bare)
    lora = instantiate(make_config(["method=lora", "method.targets=[k]"]).method, _convert_="all")
    with pytest.raises(ConfigError, match="method.targets"):
        lora.inject(bare)


def test_memvp_pooling_shortens_the_visual_prompts():
    _, backbone, model = build("memvp", "tiny_t5", 0, "method.pool_size=3", "method.n=9", "method.layers=encoder")
    prompts = model.prompting.project(torch.randn(2, 49, 256))
    assert prompts.shape[:2] == (2, 9)  # 7x7 grid -> 3x3
    model.eval()
    assert len(model.generate(make_batch(backbone), max_new_tokens=2)) == 3
    with pytest.raises(ConfigError, match="method.n=8"):
        build("memvp", "tiny_t5", 0, "method.pool_size=3", "method.n=8")


def test_lr_multipliers_set_the_learning_rate_of_matching_parameters_only():
    config, _, model = build(
        "memvp",
        "tiny_llama",
        0,
        "method.lr_multipliers={prompting.projector.*:10}",
        "method.lr=0.002",
        "method.weight_decay=0.05",
    )
    groups = param_groups(model.trainable_named_parameters(), config)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    for name, p in model.trainable_named_parameters():
        lr = 0.02 if name.startswith("prompting.projector.") else 0.002
        assert lr_of[id(p)] == pytest.approx((lr, 0.05 if p.ndim >= 2 else 0.0)), name
    assert sum(len(g["params"]) for g in groups) == len(model.trainable_named_parameters())


def test_lr_multipliers_that_match_nothing_or_are_not_numbers_fail_naming_the_key():
    config, _, model = build("memvp", "tiny_llama", 0, "method.lr_multipliers={projector.*:10}")
    with pytest.raises(ValueError, match=r"method.lr_multipliers: \['projector.\*'\] match no trainable parameter"):
        param_groups(model.trainable_named_parameters(), config)
    tiny = ["backbone=tiny_llama", "vision=tiny_random"]
    with pytest.raises(ValueError, match=r"method.lr_multipliers: \['projector.\*'\]"):
        build_model(make_config([*tiny, "method.lr_multipliers={projector.*:10}"]))  # before any data is read
    cfg = make_config(["method.lr_multipliers={prompting.projector.*:fast}"])
    with pytest.raises(ConfigError, match="method.lr_multipliers"):
        method_and_visual(cfg)
