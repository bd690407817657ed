"""Lightning callbacks that measure what a results table reports."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


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


def checkpoint_callbacks(options, directory: Path) -> list[ModelCheckpoint]:
    """Checkpoint writers from the ``checkpoint`` config (none when it is null or disabled).

    Each checkpoint holds the trainable tensors only, plus optimizer, scheduler, loop and RNG
    state (see ``VisionLanguageTask.on_save_checkpoint``); ``last.ckpt`` is the newest, the one
    ``resume`` continues from. Epoch checkpoints are kept (``epoch=E-step=S.ckpt``); step
    checkpoints (mid-epoch resume points) replace each other.
    """
    if not options or not options.get("enabled", True):
        return []
    callbacks = []
    if options.get("every_n_epochs"):
        callbacks.append(
            ModelCheckpoint(
                dirpath=directory,
                filename="epoch={epoch}-step={step}",
                auto_insert_metric_name=False,
                every_n_epochs=options.every_n_epochs,
                save_on_train_epoch_end=True,
                save_top_k=-1,
                save_last=True,
                enable_version_counter=False,
            )
        )
    if options.get("every_n_train_steps"):
        callbacks.append(
            ModelCheckpoint(
                dirpath=directory,
                filename="latest-step",
                every_n_train_steps=options.every_n_train_steps,
                save_top_k=1,
                save_last=True,
                enable_version_counter=False,
            )
        )
    return callbacks
