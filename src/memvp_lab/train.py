"""Train and evaluate one method on one task: ``python -m memvp_lab.train [overrides]``.

``train(cfg)`` is a plain function (used by tests and sweeps); ``main`` is the thin Hydra entry
point around it. Every object is built from a ``_target_`` in the composed config.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import warnings
import zipfile
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from memvp_lab.callbacks import StepTimer, checkpoint_callbacks
from memvp_lab.checkpoint import save_trainable
from memvp_lab.config.errors import ConfigError
from memvp_lab.config.schemas import register_schemas
from memvp_lab.data.features import FeatureError
from memvp_lab.data.vqa import DataError
from memvp_lab.factory import build, build_model, method_and_visual
from memvp_lab.lit_module import VisionLanguageTask
from memvp_lab.loggers import build_loggers, finish_loggers
from memvp_lab.paths import config_dir, write_text_atomic
from memvp_lab.results import write_failure, write_results
from memvp_lab.summary import format_summary

log = logging.getLogger(__name__)

register_schemas()
if not OmegaConf.has_resolver("pid"):
    # Part of every run folder name: two runs started in the same second never share a folder.
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)

# Overrides that do not say what a run is (where it writes, how it logs) stay out of run names.
_NOT_IN_NAMES = ("hydra.", "paths.", "logger", "trainer.enable_progress_bar", "experiment=")


def _hydra_config():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def run_name(fallback: str) -> str:
    """The run's overrides (``method=lora,seed=1``), or ``fallback`` when it has none."""
    hc = _hydra_config()
    overrides = [o for o in (hc.overrides.task if hc else []) if not o.startswith(_NOT_IN_NAMES)]
    return ",".join(sorted(overrides)) or fallback


def sweep_group(experiment: str | None, fallback: str) -> str:
    """The experiment's name (or ``fallback``), plus the sweep folder's name in a multirun: one
    group per sweep."""
    from hydra.types import RunMode

    prefix = experiment or fallback
    hc = _hydra_config()
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        return f"{prefix}/{Path(hc.sweep.dir).name}"
    return prefix


# Lightning cannot see that the training loader resumes mid-epoch (ResumableSampler, positioned by
# VisionLanguageTask.on_load_checkpoint) and would warn that it does not.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

for _name, _fn in (("run_name", run_name), ("sweep_group", sweep_group)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


CHECKPOINTS = "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``<run_dir>/checkpoints/`` (a run killed while writing
    one leaves it truncated, or ``last.ckpt`` not yet updated).

    A checkpoint is a zip archive (``torch.save``); it counts as complete when the archive opens
    and every member passes its CRC check, which reads it once without unpickling it.
    """
    candidates = sorted((run_dir / CHECKPOINTS).glob("*.ckpt"), key=lambda f: f.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as error:
            log.warning("skipping unreadable checkpoint %s: %s", path, error)
            continue
        if bad is not None:
            log.warning("skipping corrupt checkpoint %s: member %s fails its CRC check", path, bad)
            continue
        return path
    return None


def resume_point(resume, out_dir: Path) -> tuple[Path | None, Path]:
    """The checkpoint to continue from and the run folder it belongs to.

    ``resume``: null (start fresh), true (this run folder's newest checkpoint, if any: a sweep
    rerun with ``resume=true`` continues killed cells and starts the others), a run folder or a
    ``.ckpt`` file.
    """
    if resume is None or resume is False:
        return None, out_dir
    if resume is True:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            log.info("resume=true: %s has no checkpoint yet, starting from the beginning", out_dir)
        return ckpt, out_dir
    path = Path(str(resume)).expanduser()
    if path.is_file():
        return path, path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
    if not path.is_dir():
        raise ConfigError(f"resume={resume}: no such run folder or checkpoint file")
    run_dir = path.parent if path.name == CHECKPOINTS else path
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(
            f"resume={resume}: no loadable checkpoint in {run_dir / CHECKPOINTS} (checkpoints "
            "are written there during training)"
        )
    return ckpt, run_dir


def wandb_run_id(cfg: DictConfig, run_dir: Path) -> None:
    """Gives the W&B logger the run folder's W&B run id, created on the first start and reused when
    the run resumes, so a resumed run continues the same W&B run."""
    node = (cfg.get("logger") or {}).get("wandb")
    if node is None or node.get("id"):
        return
    id_file = run_dir / "wandb_run_id"
    if not id_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(id_file, secrets.token_hex(4))  # W&B run ids: letters and digits
    with open_dict(node):
        node.id = id_file.read_text().strip()
        node.resume = "allow"


def keep_completed_record(path: Path) -> None:
    """Moves a completed run's results.json aside (``results.previous.json``) before a rerun in the
    same folder records its failure there, so a failed rerun never erases a finished result."""
    try:
        completed = json.loads(path.read_text()).get("status") != "failed"
    except (OSError, json.JSONDecodeError, AttributeError):
        return
    if completed:
        path.replace(path.with_name("results.previous.json"))


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
        if record.get("status") != "failed":
            log.info("%s already holds results.json: skipped (skip_existing=false runs it again)", out_dir)
            return {k: v for k, v in record.items() if isinstance(v, (int, float))}
        log.info("%s holds a failed run (%s): running it again", out_dir, record.get("error"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    trainer, loggers = None, []
    try:
        method_and_visual(cfg)  # fails on a bad config before any weights or data load
        built = build_model(cfg)
        method, visual, backbone, model = built.method, built.visual, built.backbone, built.model
        datamodule = build(cfg.task.data, _partial_=True)(backbone=backbone, visual=visual, shuffle_seed=cfg.seed)
        evaluator = build(cfg.task.evaluator, _partial_=True)
        task = VisionLanguageTask(
            model,
            method,
            evaluator=evaluator,
            generation=OmegaConf.to_container(cfg.task.generation),
            flops_samples=cfg.flops_samples,
            predictions_dir=str(out_dir),
        )
        timer = StepTimer()
        saving = checkpoint_callbacks(cfg.get("checkpoint"), out_dir / CHECKPOINTS)
        wandb_run_id(cfg, out_dir)
        loggers = build_loggers(cfg)
        trainer = instantiate(
            cfg.trainer, logger=loggers or False, callbacks=[timer, *saving], enable_checkpointing=bool(saving)
        )
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        trainer.test(task, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        counts = model.parameter_counts()
        metrics.update({"params/trainable": counts["trainable"], "params/total": counts["total"]})
        metrics.update(timer.summary())
        for logger in loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith(("params/", "time/", "memory/"))})
        if trainer.is_global_zero:  # every DDP rank runs train(); one writes the run's files
            if cfg.get("save_trainable", True):
                save_trainable(model, out_dir / "trainable", method, base_model=backbone.source)
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


# Errors in what the user supplied (a setting, a data or feature file). A single run reports them
# in one line and exits with code 2, no stack trace; in a multirun they propagate, so Hydra records
# the cell as failed and runs the others.
USER_ERRORS = (ConfigError, DataError, FeatureError)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.types import RunMode

    try:
        metrics = train(cfg)
    except USER_ERRORS as error:
        hc = _hydra_config()
        if hc is None or hc.mode != RunMode.RUN:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
