"""Experiment loggers from the ``logger`` config group, and their orderly shutdown."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiates every logger node of ``cfg.logger`` and records the resolved config."""
    nodes = cfg.get("logger") or {}
    loggers = [instantiate(node) for node in nodes.values() if node is not None]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """Closes W&B runs (one run per job, also inside a multirun) and flushes the others.

    ``wandb.teardown()`` after ``finish()`` waits until the offline run file is complete.
    """
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish()
            wandb.teardown()
        else:
            logger.save()
