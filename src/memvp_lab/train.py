"""Train and evaluate one method on one task: ``python -m memvp_lab.train [overrides]``.

``train(cfg)`` is a plain function (used by tests and sweeps); ``main`` is the thin Hydra entry
point around it. Every object is built from a ``_target_`` in the composed config.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from memvp_lab.config.schemas import register_configs
from memvp_lab.config.validate import check_task_features
from memvp_lab.errors import USER_ERRORS
from memvp_lab.paths import config_dir
from memvp_lab.results.records import code_state, failed, write_failure, write_results
from memvp_lab.results.run_summary import format_summary
from memvp_lab.training.callbacks import StepTimer, build_callbacks, peak_memory
from memvp_lab.training.checkpoint import save_run_adapter
from memvp_lab.training.factory import build_model, instantiate_node
from memvp_lab.training.lit_module import VisionLanguageTask
from memvp_lab.training.loggers import build_loggers, finish_loggers
from memvp_lab.training.runs import (
    PREVIOUS_RECORD,
    changed_settings,
    hydra_config,
    keep_completed_record,
    latest_checkpoint,
    register_resolvers,
    resume_point,
    run_threads,
    wandb_run_id,
)

log = logging.getLogger(__name__)

register_configs()
register_resolvers()


def train(cfg: DictConfig) -> dict[str, float]:
    """Builds everything from ``cfg``, trains, tests, writes ``results.json``; returns the metrics.

    A run that raises (a bad setting found late, a NaN loss, out of memory) writes a results.json
    with ``status: failed`` and the error before the exception propagates, so a sweep's report
    shows the cell as failed rather than missing; Hydra's multirun goes on with the other cells
    and exits non-zero at the end.
    """
    ckpt_path, out_dir = resume_point(cfg.get("resume"), Path(cfg.paths.output_dir))
    if ckpt_path is not None:
        log.info("resuming %s from %s", out_dir, ckpt_path)
        cfg.paths.output_dir = str(out_dir)  # logs, checkpoints and results continue in the run's folder
    if cfg.get("skip_existing") and (out_dir / "results.json").exists():
        record = json.loads((out_dir / "results.json").read_text())
        if failed(record):
            log.info("%s holds a failed run (%s): running it again", out_dir, record.get("error"))
        elif changed := changed_settings(record, cfg):
            log.info(
                "%s holds a run of other settings (%s): running it again; its results.json is kept as %s",
                out_dir,
                "; ".join(changed),
                PREVIOUS_RECORD,
            )
            keep_completed_record(out_dir / "results.json")
        else:
            log.info("%s already holds results.json: skipped (skip_existing=false runs it again)", out_dir)
            return {k: v for k, v in record.items() if isinstance(v, (int, float))}
    out_dir.mkdir(parents=True, exist_ok=True)
    code_state()  # the commit this process's code came from, read before a commit can land mid-run
    torch.set_num_threads(run_threads(cfg))  # also resets a count an earlier job of a multirun set
    L.seed_everything(cfg.seed, workers=True)
    trainer, loggers = None, []
    try:
        check_task_features(cfg)  # the feature files fit the vision settings
        built = build_model(cfg)  # validates the config before any weights or data load
        method, visual, backbone, model = built.method, built.visual, built.backbone, built.model
        datamodule = instantiate_node(cfg.task.data, _partial_=True)(
            backbone=backbone, visual=visual, shuffle_seed=cfg.seed
        )
        evaluator = instantiate_node(cfg.task.evaluator, _partial_=True)
        task = VisionLanguageTask(
            model,
            method,
            evaluator=evaluator,
            generation=OmegaConf.to_container(cfg.task.generation),
            flops_samples=cfg.flops_samples,
            predictions_dir=str(out_dir),
        )
        callbacks = build_callbacks(cfg)
        timer = next((c for c in callbacks if isinstance(c, StepTimer)), None)
        wandb_run_id(cfg, out_dir)
        loggers = build_loggers(cfg)
        trainer = instantiate(
            cfg.trainer,
            logger=loggers or False,
            callbacks=callbacks,
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        )
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        # the last validation (at the end of training): what learning-rate searches select on
        validated = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        trainer.test(task, datamodule=datamodule, verbose=False)
        metrics = {**validated, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
        counts = model.parameter_counts()
        metrics.update({"params/trainable": counts["trainable"], "params/total": counts["total"]})
        metrics.update(timer.summary() if timer else peak_memory())
        for logger in loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith(("params/", "time/", "memory/"))})
        if trainer.is_global_zero:  # every DDP rank runs train(); one writes the run's files
            if cfg.get("save_trainable", True):
                store = datamodule.feature_sources
                scale = store.scale if store is not None else None
                save_run_adapter(out_dir / "trainable", model, method, backbone, cfg.vision, scale)
            primary = task.evaluators["test"]
            write_results(out_dir / "results.json", metrics, cfg, metric_rule=getattr(primary, "rule", None))
            log.info("\n%s", format_summary(cfg, metrics, primary.primary, primary.breakdown))
            log.info("results written to %s", out_dir / "results.json")
        return metrics
    except Exception as error:
        global_zero = trainer.is_global_zero if trainer is not None else int(os.environ.get("RANK", "0")) == 0
        if global_zero:
            keep_completed_record(out_dir / "results.json")
            write_failure(
                out_dir / "results.json",
                error,
                cfg,
                step=trainer.global_step if trainer else None,
                checkpoint=latest_checkpoint(out_dir),
            )
            log.error("run failed: %s: %s (recorded in %s)", type(error).__name__, error, out_dir / "results.json")
        raise
    finally:
        finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.types import RunMode

    try:
        metrics = train(cfg)
    except USER_ERRORS as error:  # a single run: one line, exit code 2; a multirun records the cell as failed
        hc = hydra_config()
        if hc is None or hc.mode != RunMode.RUN:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
