"""The one way every entry point composes ``conf/train.yaml``: schemas registered first (method
groups default to their typed schema), inside a Hydra run or outside one."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from memvp_lab.config.schemas import register_schemas
from memvp_lab.paths import config_dir


def compose_train(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (Hydra override syntax)."""
    register_schemas()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
