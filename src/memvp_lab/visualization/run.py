"""A finished MemVP run loaded back for the plots: the shared run loader
(``memvp_lab.training.finished_run``) plus the model's visual memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memvp_lab.methods.memvp.memory import VisualMemory
from memvp_lab.training.finished_run import FinishedRun, data_module, load_run
from memvp_lab.visualization.retrieval import visual_memory

__all__ = ["MemoryRun", "data_module", "load_memory_run"]


@dataclass
class MemoryRun(FinishedRun):
    """A finished run whose method has visual memory (``memory``)."""

    memory: VisualMemory | None = None


def load_memory_run(run_dir: str | Path, data_dir: str | None = None, device: str = "cpu") -> MemoryRun:
    """The run with its trained tensors; a method without visual memory is refused (naming it)
    before they are read."""
    run = load_run(run_dir, data_dir, device, check=lambda built, cfg: visual_memory(built.model, str(cfg.method.name)))
    return MemoryRun(run.dir, run.cfg, run.built, visual_memory(run.model, str(run.cfg.method.name)))
