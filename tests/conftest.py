"""Shared fixtures: composed configs, tiny backbones and a small shapes dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

from memvp_lab.config.schemas import register_schemas  # noqa: E402
from memvp_lab.paths import config_dir  # noqa: E402

register_schemas()
REPO = Path(__file__).resolve().parents[1]


def make_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Composes ``conf/train.yaml`` with overrides, outside a Hydra run."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A session-wide data folder: small shapes datasets are generated once per session."""
    return tmp_path_factory.mktemp("data")


TINY_DATA = [
    "task.data.num_train_images=40",
    "task.data.num_val_questions=20",
    "task.data.num_test_questions=40",
    "vision=tiny_random",
]


def tiny_overrides(backbone: str, data_dir: Path, *extra: str) -> list[str]:
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


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield
