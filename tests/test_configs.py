"""Every shipped config composes, validates and names what it builds."""

from __future__ import annotations

import functools
import itertools
import re

import pytest
from hydra.utils import get_class, get_method, instantiate

from helpers import make_config
from memvp_lab.config.compose import compose_config
from memvp_lab.config.validate import validate
from memvp_lab.errors import ConfigError
from memvp_lab.paths import config_dir, experiments_dir
from memvp_lab.training.factory import method_and_visual
from memvp_lab.vision.spec import VisualSpec


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def test_every_config_file_starts_with_a_comment_and_a_command():
    for path in config_dir().rglob("*.yaml"):
        lines = [l for l in path.read_text().splitlines() if not l.startswith("# @package")]
        assert lines[0].startswith("#"), path
        assert any("python -m memvp_lab" in l for l in lines if l.startswith("#")), path


@functools.cache
def family_of(backbone: str) -> str:
    return make_config([f"backbone={backbone}"]).backbone.family


def expected_error(method: str, backbone: str, vision: str) -> str | None:
    """The key a start-up error must name for an invalid combination (None: valid)."""
    family = family_of(backbone)
    if backbone == "hf_causal":  # a required key, checked before anything else
        return "backbone.model_id is required"
    if vision == "clip_vit_l14":  # trains ViT adapters; shapes_vqa serves pre-extracted features
        return "vision.adapters"
    if method == "llava_lora" and family == "encoder_decoder":  # the family is checked first
        return "method=llava_lora needs a decoder-only backbone"
    if method == "vl_pet" and family == "decoder_only":
        return "method=vl_pet needs an encoder-decoder backbone"
    if vision == "clip_vit_l14_336" and method == "memvp":  # 576 tokens: more than any recipe's n
        return "method.n"
    if vision == "clip_vit_b32_frames" and method == "adem_vl":  # its second view pools the grid
        return "method.pool_sizes"
    if vision == "clip_vit_b32_frames" and method not in ("memvp", "llava_lora", "vlora", "vlora_official"):
        # frames: no grid to pool
        return "method.prompt.pool_size"
    return None


MODEL_GROUPS = ("method", "backbone", "vision")
RUN_GROUPS = ("task", "trainer", "logger")


# Named Hugging Face configs that differ from llama3_8b only in their hub id and architecture
# numbers: they compose and validate through the same code (tests/test_hf_families.py builds each).
SAME_AS_LLAMA3_8B = {"llama2_7b", "mistral_7b", "qwen2_5_7b"}


def matrix(groups: tuple[str, ...], fast) -> list:
    """Every combination of the groups' options; those ``fast`` rejects run in the slow tier."""
    return [
        pytest.param(combo, id="-".join(combo), marks=() if fast(*combo) else pytest.mark.slow)
        for combo in itertools.product(*(options(g) for g in groups))
        if not SAME_AS_LLAMA3_8B & set(combo)
    ]


# Fast tier: every method on a tiny backbone of each family with the visions that test its rules.
FAST_MODELS = matrix(
    MODEL_GROUPS,
    lambda m, b, v: b in ("tiny_llama", "tiny_t5") and v in ("tiny_random", "clip_vit_b32_frames", "clip_vit_l14"),
)
FAST_RUNS = matrix(RUN_GROUPS, lambda task, trainer, logger: trainer == "debug" and logger == "csv")


@pytest.mark.parametrize("combo", FAST_MODELS)
def test_every_model_combination_composes_and_validates_or_names_the_key(combo):
    cfg = make_config([f"{g}={o}" for g, o in zip(MODEL_GROUPS, combo)], output_dir=None)
    key = expected_error(*combo)
    if key is None:
        method_and_visual(cfg)
    else:
        with pytest.raises(ConfigError, match=re.escape(key)):
            method_and_visual(cfg)
    get_method(cfg.backbone._target_)  # every _target_ names something importable
    get_method(cfg.vision.encoder._target_)


@pytest.mark.parametrize("combo", FAST_RUNS)
def test_every_run_combination_composes_and_validates(combo):
    overrides = [f"{g}={o}" for g, o in zip(RUN_GROUPS, combo)]
    if combo[0] == "scienceqa":  # its CLIP ViT-L/14 gives 256 tokens; the embedded default's MemVP holds 64
        with pytest.raises(ConfigError, match=re.escape("method.n=64 is smaller than the 256 visual tokens")):
            method_and_visual(make_config(overrides, output_dir=None))
        overrides.append("method.n=320")
    cfg = make_config(overrides, output_dir=None)
    method = instantiate(cfg.method, _convert_="all")
    validate(cfg, method, VisualSpec(cfg.vision.feature_dim, cfg.vision.num_tokens))
    get_class(cfg.task.data._target_)


def test_paper_settings_of_method_backbone_pairs():
    bart = make_config(["backbone=bart_base"]).method
    assert (bart.n, bart.lam, bart.lr, bart.layers, bart.shared_positions, bart.projector_hidden) == (
        240,
        0.01,
        1e-3,
        "encoder",
        False,
        0,
    )  # paper Table 5
    assert make_config(["backbone=llama_7b"]).method.n == 320  # Table 7
    assert make_config(["backbone=llama_13b"]).method.n == 400
    smol = make_config([]).method
    assert (smol.n, smol.shared_positions, smol.projector_hidden) == (64, True, 128)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(p.stem for p in experiments_dir().glob("*.yaml")))
def test_every_experiment_composes(experiment):
    from omegaconf import OmegaConf

    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    method = instantiate(cfg.method, _convert_="all")
    validate(cfg, method, VisualSpec(cfg.vision.feature_dim, cfg.vision.num_tokens))
    # Every swept key exists in the composed config.
    for key in OmegaConf.to_container(cfg.hydra.sweeper.params):
        assert OmegaConf.select(cfg, key) is not None, key


@pytest.mark.parametrize(
    "size, mode, grid, message",
    [
        (6, "max", True, None),
        (None, "avg", False, None),  # no pooling: any token layout
        (7, "max", True, None),  # 49 tokens -> 7 x 7: allowed, changes nothing
        (6, "mean", True, "method.prompt.pool_mode='mean': expected max or avg"),
        (6, "max", False, "method.prompt.pool_size=6 pools a 2D grid"),
        (0, "max", True, "method.prompt.pool_size=0 must be positive"),
        (8, "max", True, "pool_size^2 <= the 49 visual tokens"),
    ],
)
def test_pooling_settings_are_checked_once_for_both_method_families(size, mode, grid, message):
    from memvp_lab.vision.pooling import check_pooling

    visual = VisualSpec(feature_dim=8, num_tokens=49, grid=grid)
    if message is None:
        check_pooling("method.prompt", size, mode, visual)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_pooling("method.prompt", size, mode, visual)


@pytest.mark.parametrize(
    "overrides, budget",
    [
        ([], (1440, None, 360, None)),  # the embedded default's recipe
        (["method=llava_lora"], (1440, None, 360, None)),  # every method on the pair shares it
        (["trainer=ddp_cpu"], (1440, None, 360, None)),
        (["trainer=debug"], (4, None, 2, None)),  # debug keeps its few steps
        (["task=vqav2"], (-1, 1, None, 1)),  # no recipe for the pair: one epoch, validated at its end
        (["backbone=tiny_llama"], (-1, 1, None, 1)),
        (["recipe.max_steps=800"], (800, None, 360, None)),
    ],
)
def test_the_recipe_sets_the_budget_of_its_backbone_and_task_only(overrides, budget):
    trainer = make_config(overrides, output_dir=None).trainer
    assert (
        trainer.max_steps,
        trainer.max_epochs,
        trainer.val_check_interval,
        trainer.check_val_every_n_epoch,
    ) == budget
