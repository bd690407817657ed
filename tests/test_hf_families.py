"""``backbone=hf_causal``: every decoder-only method on tiny random models of each supported
Hugging Face family, built from the family's own transformers config (nothing downloaded).

For each (family, method): the modules land where the method's design puts them, only the
intended tensors change in training, and generation works; for each family MemVP's memory term
equals the FFN with concatenated weights (paper Eq. 11-12). Then the user's path: a model saved
to a local folder trains through the CLI, an unsupported FFN stops at start-up naming what it
found, and the named configs build the published architectures to the exact parameter.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import open_dict

from helpers import (
    TINY_CAUSAL_SHAPE,
    TINY_DATA,
    changed_by_training,
    expected_trainable,
    make_batch,
    make_config,
    save_tiny_model,
)
from memvp_lab.errors import ConfigError
from memvp_lab.methods.memvp.memory import memory_in
from memvp_lab.methods.registry import methods, runs_on
from memvp_lab.train import train
from memvp_lab.training.factory import build_backbone
from memvp_lab.vision.spec import VisualSpec

VISUAL = VisualSpec(feature_dim=256, num_tokens=49)  # vision=tiny_random
LAYERS = TINY_CAUSAL_SHAPE["num_hidden_layers"]
# model_type -> extra config fields; one entry per family the backbone config promises.
FAMILIES = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "gemma2": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16},
    "phi3": {},
    "olmo": {},
    "olmo2": {},
}
DECODER_ONLY = [m for m in methods() if runs_on(m, False)]
# VLoRA needs separate q / k / v projections: Phi-3's fused qkv_proj is refused (tested below).
CASES = [(f, m) for f in FAMILIES for m in DECODER_ONLY if (f, m) != ("phi3", "vlora")]
# Per-method settings for the 2-layer models (VLoRA's every 4th layer would leave none).
TINY_METHOD = {"vlora": ["method.every=1"]}


def architecture(model_type: str, **extra) -> dict:
    return {"model_type": model_type, **TINY_CAUSAL_SHAPE, **FAMILIES.get(model_type, {}), **extra}


def compose(method: str, model_type: str, *overrides: str, **extra):
    cfg = make_config(
        [
            f"method={method}",
            "backbone=hf_causal",
            f"backbone.model_id=tiny/{model_type}",
            "backbone.weights=random",
            "vision=tiny_random",
            *overrides,
        ]
    )
    with open_dict(cfg):
        cfg.backbone.architecture = architecture(model_type, **extra)
    return cfg


def build(method: str, model_type: str, seed: int = 0):
    cfg = compose(method, model_type, *TINY_METHOD.get(method, []))
    torch.manual_seed(seed)
    config = instantiate(cfg.method, _convert_="all")
    backbone = build_backbone(cfg.backbone)
    return backbone, config.build(backbone, VISUAL)


def injected_places(method: str, model) -> set[str]:
    """Where the method put its modules, as ``layer index: module path inside the layer``."""
    if method in ("memvp", "adem_vl"):
        names = [s.name for s in memory_in(model.prompting).sites]
    elif method == "vlora":
        names = [t.name for t in model.prompting.targets]
    else:
        names = [n.rsplit(".", 1)[0] for n in model.injected if not n.endswith(".lora_B")]
    return {n.removeprefix("model.layers.") for n in names}


def expected_places(method: str, model_type: str) -> set[str]:
    layers = range(LAYERS)
    if method in ("memvp", "adem_vl"):
        return {f"{i}.mlp" for i in layers}
    if method == "vlora":
        return {f"{i}.self_attn.{k}" for i in layers for k in "qkvo"} | {f"{i}.mlp" for i in layers}
    if method in ("lora", "llava_lora"):
        projections = ["qkv_proj"] if model_type == "phi3" else ["q_proj", "v_proj"]
        return {f"{i}.self_attn.{p}" for i in layers for p in projections}
    if method in ("vl_adapter", "compacter"):
        return {f"{i}.{s}" for i in layers for s in ("self_attn", "mlp")}
    return set()  # full_ft adds nothing


@pytest.mark.parametrize("model_type,method", CASES, ids=lambda x: str(x))
def test_method_lands_in_place_trains_only_its_tensors_and_generates(model_type, method):
    backbone, model = build(method, model_type)
    assert type(backbone.model).__name__.lower().startswith(model_type.split("_")[0].replace("_", ""))
    assert injected_places(method, model) == expected_places(method, model_type)

    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert trainable == {n for n, _ in model.named_parameters() if expected_trainable(method, n, model)}
    batch = make_batch(backbone)
    assert changed_by_training(model, batch) == trainable

    model.eval()
    for beams in (1, 2):
        answers = model.generate(batch, max_new_tokens=3, num_beams=beams)
        assert len(answers) == len(batch) and all(isinstance(a, str) for a in answers)


def _gated_weights(mlp):
    """(W_gate, W_up, W_down) of a gated FFN, splitting Phi-3's fused gate_up_proj (gate first)."""
    if hasattr(mlp, "gate_up_proj"):
        gate, up = mlp.gate_up_proj.weight.chunk(2, dim=0)
    else:
        gate, up = mlp.gate_proj.weight, mlp.up_proj.weight
    return gate, up, mlp.down_proj.weight


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_memvp_equals_ffn_with_concatenated_weights_float64(model_type):
    """Paper Eq. 11-12 on the family's own FFN: keys appended to the gate, values to the down
    projection, and gate rows x/|x|^2 appended to the up projection, so the new entries' gate is 1."""
    backbone, model = build("memvp", model_type)
    model.double().eval()
    memory = model.prompting
    mlp = memory.sites[0].input_module
    g = torch.Generator().manual_seed(3)
    visual = torch.randn(2, VISUAL.num_tokens, VISUAL.feature_dim, generator=g, dtype=torch.float64)
    u = torch.randn(2, 4, backbone.hidden_size, generator=g, dtype=torch.float64)
    with torch.no_grad(), memory.bind(visual):
        out = mlp(u)
    with torch.no_grad():
        prompts = F.pad(memory.project(visual), (0, 0, 0, memory.n - VISUAL.num_tokens))
        keys, values = prompts + memory.pos_k[0], prompts + memory.pos_v[0]
    w_gate, w_up, w_down = _gated_weights(mlp)
    act = memory.sites[0].activation
    for b in range(2):
        for t in range(4):
            x = u[b, t]
            w_gate_cat = torch.cat([w_gate, keys[b]], dim=0)
            w_up_cat = torch.cat([w_up, (x / x.dot(x)).expand(memory.n, -1)], dim=0)
            w_down_cat = torch.cat([w_down, memory.scale * values[b].T], dim=1)
            expected = w_down_cat @ (act(w_gate_cat @ x) * (w_up_cat @ x))
            torch.testing.assert_close(out[b, t], expected, atol=1e-9, rtol=1e-9)


def test_a_mixture_of_experts_ffn_stops_memvp_at_start_up_naming_what_it_found():
    with pytest.raises(ConfigError, match=r"found no FFN.*mlp: MixtralSparseMoeBlock\(.*experts.*it knows gate_proj"):
        build("memvp", "mixtral")


def test_a_layout_without_self_attn_and_mlp_stops_adapters_naming_the_layouts_known():
    with pytest.raises(ConfigError, match=r"method=vl_adapter found no attention or FFN sub-layer.*GPT2LMHeadModel"):
        build("vl_adapter", "gpt2")


def test_a_local_model_folder_trains_as_backbone_model_id(data_dir, tmp_path):
    """The user's path: a Hugging Face folder (model + tokenizer) as backbone.model_id."""
    folder = save_tiny_model(tmp_path / "my-qwen2", "qwen2")
    overrides = [
        "backbone=hf_causal",
        f"backbone.model_id={folder}",
        "trainer=debug",
        "logger=csv",
        f"paths.data_dir={data_dir}",
        "method.n=64",
        *TINY_DATA,
    ]
    run = tmp_path / "run"
    train(make_config(overrides, run))
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["backbone"]["model_id"] == str(folder)
    # shared P_k, P_v (64 x 64) + projector 256 -> 128 -> 64 with biases
    assert results["params/trainable"] == 2 * 64 * 64 + (256 * 128 + 128) + (128 * 64 + 64)
    assert 0.0 <= results["test/vqa_score"] <= 1.0
    meta = json.loads((run / "trainable" / "trainable.json").read_text())
    assert meta["base_model"] == str(folder)


def test_add_bos_auto_follows_the_tokenizer():
    from memvp_lab.backbones.backbone import TextFormat, resolve_text_format
    from memvp_lab.backbones.tiny import tiny_tokenizer

    plain, bart = tiny_tokenizer("llama"), tiny_tokenizer("bart")  # adds nothing / starts with <s>
    assert resolve_text_format(TextFormat(add_bos="auto"), plain).add_bos is False
    assert resolve_text_format(TextFormat(add_bos="auto"), bart).add_bos is True
    with pytest.raises(ConfigError, match="backbone.text.add_bos='sometimes'"):
        resolve_text_format(TextFormat(add_bos="sometimes"), plain)


# The published models' parameter counts (their model cards / papers), reached by the named
# configs' architecture blocks on the meta device.
PUBLISHED = {
    "llama2_7b": 6_738_415_616,
    "llama3_8b": 8_030_261_248,
    "mistral_7b": 7_241_732_096,
    "qwen2_5_7b": 7_615_616_512,
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_named_configs_build_the_published_architecture(name):
    cfg = make_config([f"backbone={name}", "backbone.weights=random"])
    assert cfg.backbone.name == name and cfg.backbone.family == "decoder_only"
    backbone = build_backbone(cfg.backbone, device="meta")
    assert sum(p.numel() for p in backbone.model.parameters()) == PUBLISHED[name]


def test_hf_causal_without_a_model_id_names_the_key():
    from memvp_lab.training.factory import build_model

    with pytest.raises(ConfigError, match=r"backbone.model_id is required: set backbone.model_id=<a hub id"):
        build_model(make_config(["backbone=hf_causal", "vision=tiny_random"]))


def test_vlora_refuses_a_fused_qkv_projection_naming_it():
    with pytest.raises(
        ConfigError, match=r"self_attn of backbone=hf_causal has no separate q projection .*drop q from method.types"
    ):
        build("vlora", "phi3")
