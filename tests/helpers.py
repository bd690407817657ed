"""Builders shared by several test modules: composed configs, tiny backbones and MemVP configs."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

import numpy as np
from omegaconf import DictConfig, open_dict

from memvp_lab.backbones.tiny import build_tiny
from memvp_lab.config.compose import compose_config
from memvp_lab.data import shapes_vqa
from memvp_lab.data.collate import VLCollator
from memvp_lab.data.vqa import load_annotations
from memvp_lab.methods.contract import Schedule
from memvp_lab.methods.memvp import Ablation, LayerSet, MemVPConfig
from memvp_lab.metrics.vqa_score import vqa_score
from memvp_lab.model.vision_language_model import norm_modules
from memvp_lab.vision.spec import VisualSpec

REPO = Path(__file__).resolve().parents[1]


def make_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Composes ``conf/train.yaml`` with overrides, outside a Hydra run."""
    cfg = compose_config(overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


TINY_DATA = [
    "task.data.num_train_images=40",
    "task.data.num_val_questions=20",
    "task.data.num_test_questions=40",
    "vision=tiny_random",
]


def tiny_overrides(backbone: str, data_dir: Path, *extra: str) -> list[str]:
    """A tiny run of MemVP (by default) on ``backbone``: debug trainer, 40 training images."""
    layers = ["method.layers=encoder"] if backbone in ("tiny_bart", "tiny_t5") else []
    return [
        f"backbone={backbone}",
        "trainer=debug",
        "logger=csv",
        f"paths.data_dir={data_dir}",
        "method.n=64",
        *TINY_DATA,
        *layers,
        *extra,
    ]


FAMILY = {"llama": "decoder_only", "bart": "encoder_decoder", "t5": "encoder_decoder"}


def tiny(arch: str, **kwargs):
    return build_tiny(f"tiny_{arch}", FAMILY[arch], arch, **kwargs)


def memvp_config(**overrides) -> MemVPConfig:
    values = dict(
        name="memvp",
        lr=1e-2,
        weight_decay=0.0,
        warmup_steps=0,
        schedule=Schedule.constant,
        n=16,
        lam=0.01,
        scale=1.0,
        dropout=0.0,
        projector_hidden=0,
        projector_bias=True,
        shared_positions=False,
        layers=LayerSet.all,
        ablation=Ablation.none,
        pos_k_init_std=0.02,
        pos_v_init_std=0.02,
    )
    values.update(overrides)
    return MemVPConfig(**values)


VISUAL = VisualSpec(feature_dim=32, num_tokens=8)


def make_batch(backbone, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    questions = ["what color is the circle?", "how many shapes are there?", "is the square on the left?"]
    samples = [
        dict(
            question=questions[i % 3],
            target=["red", "2", "yes"][i % 3],
            visual=rng.standard_normal((49, 256)).astype(np.float32),
            has_image=1.0,
            weight=1.0,
            index=i,
            question_id=i,
            answers=["red"] * 10,
            group="color",
            answer_type="other",
        )
        for i in range(n)
    ]
    return VLCollator(backbone, "{question}", max_prompt_tokens=32, max_target_tokens=4)(samples)


def expected_trainable(method: str, name: str, model) -> bool:
    """What each method must train, by structure (independent of how the method selects it)."""
    if name.startswith(("prompting.", "vision_tower.")):
        return True
    lm_name = name.removeprefix("lm.")
    norms = {f"{n}." for n, _ in norm_modules(model.lm)}
    is_norm = any(lm_name.startswith(n) for n in norms)
    if method == "full_ft":
        return True
    if method in ("lora", "llava_lora"):
        bias = method == "lora" and lm_name.endswith(".bias")  # the reference trains every bias (BART)
        return ".lora_" in lm_name or bias
    if method in ("vl_adapter", "compacter"):
        return ".adapter." in lm_name or is_norm
    if method == "vl_pet":
        encoder_norm = is_norm and ".encoder." in f".{lm_name}" and ("layer_norm" in lm_name or "layernorm" in lm_name)
        return ".vl_pet." in lm_name or ".value_adapter." in lm_name or encoder_norm
    return False  # memvp: only its prompting module


def shapes_annotations(results: dict) -> Path:
    """The official-format annotation file of the shapes dataset a run's results.json used."""
    data = results["config"]["task"]["data"]
    spec = shapes_vqa.ShapesVQASpec(
        seed=data["seed"],
        num_train_images=data["num_train_images"],
        num_val_questions=data["num_val_questions"],
        num_test_questions=data["num_test_questions"],
    )
    return Path(data["data_dir"]) / spec.dirname() / data["annotation_file"]


def rescored_vqa(run_dir: Path, annotations: list[Path], rule: str = "official") -> float:
    """A run's test VQA score recomputed from its ``predictions_test.json`` and the human answers."""
    answers = {}
    for path in annotations:
        answers.update(load_annotations(path))
    predictions = json.loads((run_dir / "predictions_test.json").read_text())
    return fmean(vqa_score(p["answer"], answers[p["question_id"]], rule=rule) for p in predictions)


# A tiny decoder-only shape for any Hugging Face family, sized to the tiny byte-level tokenizer
# (512 tokens; its <pad>, <s>, </s> are 0, 1, 2).
TINY_CAUSAL_SHAPE = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def save_tiny_model(folder: Path, model_type: str = "qwen2") -> Path:
    """A random tiny model of a Hugging Face family saved as a local model folder (weights,
    config, tokenizer), as a user's downloaded or fine-tuned model would be."""
    from memvp_lab.backbones.pretrained import load_pretrained

    architecture = {"model_type": model_type, **TINY_CAUSAL_SHAPE}
    backbone = load_pretrained("tiny", "decoder_only", "tiny", weights="random", architecture=architecture)
    backbone.model.save_pretrained(folder)
    backbone.tokenizer.save_pretrained(folder)
    return folder


def changed_by_training(model, batch, steps: int = 3) -> set[str]:
    """Names of the parameters that ``steps`` AdamW steps on ``batch`` change (each loss finite)."""
    import torch

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(batch).mean()
        assert torch.isfinite(loss), loss
        loss.backward()
        optimizer.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
