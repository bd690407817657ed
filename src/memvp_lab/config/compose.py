"""The one way every entry point and test composes a config of ``conf/`` (``train``, ``bench``,
``visualize``): schemas registered first (method groups default to their typed schema), inside a
Hydra run or outside one."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from memvp_lab.config.schemas import register_configs
from memvp_lab.paths import config_dir


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` (Hydra override syntax);
    ``return_hydra_config=True`` keeps the ``hydra`` node (sweeper, launcher, run folders)."""
    register_configs()
    kwargs = {"config_name": config_name, "overrides": list(overrides), "return_hydra_config": return_hydra_config}
    if GlobalHydra.instance().is_initialized():
        return compose(**kwargs)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(**kwargs)
