"""A finished training run loaded back: its config, its model with the trained tensors, its data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from memvp_lab.checkpoint import load_trainable
from memvp_lab.config.errors import ConfigError
from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.factory import Built, build, build_model
from memvp_lab.methods.memvp.memory import VisualMemory
from memvp_lab.visualization.retrieval import visual_memory


@dataclass
class Run:
    """Attributes:
    dir: the run folder.
    cfg: the run's resolved config (``results.json`` ``config``).
    built: method, visual spec, backbone and model (trained tensors loaded, eval mode).
    memory: the model's visual memory.
    """

    dir: Path
    cfg: DictConfig
    built: Built
    memory: VisualMemory

    @property
    def model(self):
        return self.built.model


def run_config(run_dir: str | Path, data_dir: str | None = None) -> DictConfig:
    """The resolved config a run recorded; ``data_dir`` moves its data folder (``paths.data_dir``,
    and every ``task.data`` path under it) elsewhere."""
    results = Path(run_dir) / "results.json"
    if not results.exists():
        raise ConfigError(
            f"run_dir={run_dir}: no results.json there (a finished run folder holds results.json and trainable/)"
        )
    cfg = OmegaConf.create(json.loads(results.read_text())["config"])
    if data_dir is not None:
        old = str(cfg.paths.data_dir)
        with open_dict(cfg):
            cfg.paths.data_dir = str(data_dir)
            for key, value in cfg.task.data.items():
                if isinstance(value, str) and value.startswith(old):
                    cfg.task.data[key] = str(data_dir) + value[len(old) :]
    return cfg


def load_run(run_dir: str | Path, data_dir: str | None = None, device: str = "cpu") -> Run:
    """Builds the run's model and loads its trained tensors from ``<run_dir>/trainable/``.

    A method without visual memory is refused (naming it) before any weights are read.
    """
    cfg = run_config(run_dir, data_dir)
    built = build_model(cfg, None if device == "cpu" else device)
    memory = visual_memory(built.model, str(cfg.method.name))
    load_trainable(built.model, Path(run_dir) / "trainable", str(cfg.method.name))
    built.model.to(torch.device(device)).eval()
    return Run(Path(run_dir), cfg, built, memory)


def data_module(run: Run) -> VLDataModule:
    """The run's task data, set up as for testing: same prompt, tokenisation and feature transform
    (``standardize_features`` statistics from the training images). Features are read on demand."""
    node = run.cfg.task.data.copy()
    if "preload_features" in node:
        with open_dict(node):
            node.preload_features = False
    datamodule = build(node, _partial_=True)(
        backbone=run.built.backbone, visual=run.built.visual, shuffle_seed=run.cfg.seed
    )
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule
