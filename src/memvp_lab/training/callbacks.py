"""Lightning callbacks from the ``callbacks`` config group, and the one that measures step times."""

from __future__ import annotations

import resource
import statistics
import sys
import time

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


class StepTimer(L.Callback):
    """Wall-clock seconds per training step and per evaluation (test) batch, and in total.

    The first ``warmup`` steps / batches are excluded from the per-step values (allocator and
    kernel warm-up), which are medians, robust to a stall caused by another process. The totals
    cover the whole of ``fit`` (validation included; after a resume, the resumed part) and of
    ``test``.
    """

    def __init__(self, warmup: int = 2) -> None:
        self.warmup = warmup
        self.train_times: list[float] = []
        self.test_times: list[float] = []
        self.walls: dict[str, float] = {}
        self._t0 = 0.0
        self._wall0 = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._wall0 = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.walls["time/fit_wall_s"] = time.perf_counter() - self._wall0

    def on_test_start(self, trainer, pl_module) -> None:
        self._wall0 = time.perf_counter()

    def on_test_end(self, trainer, pl_module) -> None:
        self.walls["time/test_wall_s"] = time.perf_counter() - self._wall0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_times.append(time.perf_counter() - self._t0)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._t0 = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_times.append(time.perf_counter() - self._t0)

    def _median(self, times: list[float]) -> float | None:
        kept = times[self.warmup :] if len(times) > self.warmup else times
        return statistics.median(kept) if kept else None

    def summary(self) -> dict[str, float]:
        out = {**peak_memory(), **self.walls}
        if (v := self._median(self.train_times)) is not None:
            out["time/train_s_per_step"] = v
        if (v := self._median(self.test_times)) is not None:
            out["time/eval_s_per_batch"] = v
        return out


def peak_memory() -> dict[str, float]:
    """Peak memory of this process so far: resident set size (CPU) and CUDA allocations (GB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"memory/peak_rss_gb": rss / (2**30 if sys.platform == "darwin" else 2**20)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["memory/peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Instantiates every callback node of ``cfg.callbacks`` (``conf/callbacks/``); null nodes are left out."""
    nodes = cfg.get("callbacks") or {}
    return [instantiate(node) for node in nodes.values() if node is not None]
