"""A finished training run loaded back: its recorded config, its model with the trained tensors,
its task data. Shared by ``python -m memvp_lab.evaluate`` and ``python -m memvp_lab.visualize``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.errors import ConfigError
from memvp_lab.results.records import failed
from memvp_lab.training.checkpoint import META, load_trainable
from memvp_lab.training.factory import Built, build_model, instantiate_node

TRAINABLE = "trainable"


@dataclass
class FinishedRun:
    """Attributes:
    dir: the run folder.
    cfg: the run's resolved config (``results.json`` ``config``), with any overrides applied.
    built: method, visual spec, backbone and model (trained tensors loaded, eval mode).
    """

    dir: Path
    cfg: DictConfig
    built: Built

    @property
    def model(self):
        return self.built.model


def run_config(run_dir: str | Path, data_dir: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved config a finished run recorded.

    ``data_dir`` moves its data folder (``paths.data_dir``, and every ``task.data`` path under it)
    elsewhere; ``overrides`` (``task.<key>=<value>``, OmegaConf dot-list syntax) change how it is
    evaluated, e.g. ``task.generation.num_beams=5``.
    """
    results = Path(run_dir) / "results.json"
    if not results.exists():
        raise ConfigError(
            f"run_dir={run_dir}: no results.json there (a finished run folder holds results.json and {TRAINABLE}/)"
        )
    record = json.loads(results.read_text())
    if failed(record) or not record.get("config"):
        raise ConfigError(f"run_dir={run_dir}: the run failed ({record.get('error')}); there is nothing to load")
    cfg = OmegaConf.create(record["config"])
    if data_dir is not None:
        old = str(cfg.paths.data_dir)
        with open_dict(cfg):
            cfg.paths.data_dir = str(data_dir)
            for key, value in cfg.task.data.items():
                if isinstance(value, str) and value.startswith(old):
                    cfg.task.data[key] = str(data_dir) + value[len(old) :]
    return merge_overrides(
        cfg,
        overrides,
        allowed=("task.",),
        why="a finished run's model is fixed; only task settings change how it is evaluated "
        "(task.<key>=<value>, e.g. task.generation.num_beams=5)",
        known_keys_only=True,
    )


def merge_overrides(
    cfg: DictConfig, overrides: Sequence[str], allowed: tuple[str, ...], why: str, known_keys_only: bool = False
) -> DictConfig:
    """``cfg`` with dot-list ``overrides`` (``key=value``) merged in, each refused unless its key
    starts with one of ``allowed`` (``why`` says what may change); ``known_keys_only`` also refuses
    a key the recorded config does not have (a typo would otherwise add a setting nothing reads)."""
    bad = [o for o in overrides if "=" not in o or not o.startswith(allowed)]
    if bad:
        raise ConfigError(f"{' '.join(bad)}: {why}")
    if known_keys_only:
        for override in overrides:
            key = override.split("=", 1)[0]
            if OmegaConf.select(cfg, key, default=None) is None and not OmegaConf.is_missing(cfg, key):
                raise ConfigError(f"{key}: the run's config has no such key (see results.json config)")
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{' '.join(overrides)}: {err}") from None


def load_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    overrides: Sequence[str] = (),
    check: Callable[[Built, DictConfig], None] | None = None,
) -> FinishedRun:
    """Builds the run's model and loads its trained tensors from ``<run_dir>/trainable/``.

    ``check(built, cfg)`` runs before the trained tensors are read (e.g. to refuse a method a
    tool cannot use).
    """
    cfg = run_config(run_dir, data_dir, overrides)
    if not (Path(run_dir) / TRAINABLE / META).is_file():
        raise ConfigError(
            f"run_dir={run_dir}: no trained tensors in {Path(run_dir) / TRAINABLE} (runs write them unless "
            "save_trainable=false)"
        )
    built = build_model(cfg, None if device == "cpu" else device)
    if check is not None:
        check(built, cfg)
    load_trainable(built.model, Path(run_dir) / TRAINABLE, str(cfg.method.name))
    built.model.to(torch.device(device)).eval()
    return FinishedRun(Path(run_dir), cfg, built)


def task_data(run: FinishedRun, preload: bool = True) -> VLDataModule:
    """The run's task data module (not set up): same prompt, tokenisation and feature transform
    (``standardize_features`` statistics from the training images). ``preload=False`` reads
    features on demand (for a few samples)."""
    return data_module_of(run.cfg, run.built, preload)


def data_module_of(cfg: DictConfig, built: Built, preload: bool = True) -> VLDataModule:
    """The task data module (not set up) a run config and its built model train and evaluate on."""
    node = cfg.task.data.copy()
    if "preload_features" in node and not preload:
        with open_dict(node):
            node.preload_features = False
    return instantiate_node(node, _partial_=True)(backbone=built.backbone, visual=built.visual, shuffle_seed=cfg.seed)


def data_module(run: FinishedRun) -> VLDataModule:
    """The run's task data, set up, features read on demand (a few samples looked at)."""
    datamodule = task_data(run, preload=False)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule
