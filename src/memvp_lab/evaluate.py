"""Evaluate a finished run's trained tensors on a split of its task:

    python -m memvp_lab.evaluate run_dir=<run dir> [split=test|val] [task.<key>=<value> ...]
    python -m memvp_lab.evaluate run_dir=<run dir> task.generation.num_beams=5 out_dir=beams5

The run's model is rebuilt from its ``results.json`` config and its adapter-only checkpoint
(``<run dir>/trainable/``); task settings (generation, data files, evaluation batch size) may be
changed, the model may not. Writes ``evaluation.json`` (metrics, split, overrides, environment)
and ``predictions_<split>.json`` (the task's official format) to ``out_dir`` (default
``<run dir>/evaluate/<split>``). Evaluating the test split unchanged gives the run's own test
metrics exactly.

Other settings: ``data_dir=`` (the run's data moved elsewhere), ``device=cpu|cuda``,
``threads=`` (torch intra-op threads).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from memvp_lab.errors import ConfigError
from memvp_lab.key_value_cli import parse_key_values, positive_int, run_tool
from memvp_lab.paths import write_text_atomic
from memvp_lab.results.records import code_state, package_versions
from memvp_lab.results.run_summary import format_summary
from memvp_lab.training.factory import instantiate_node
from memvp_lab.training.finished_run import load_run, task_data
from memvp_lab.training.lit_module import VisionLanguageTask

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
SETTINGS = ("run_dir", "split", "out_dir", "data_dir", "device", "threads")
RECORD = "evaluation.json"


def evaluate(
    run_dir: str | Path,
    split: str = "test",
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: str | Path | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, float]:
    """Scores the run's trained model on ``split``; returns the metrics (``<split>/<name>``)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split}: expected one of {', '.join(SPLITS)}")
    if threads:
        torch.set_num_threads(int(threads))
    code_state()  # the commit this process's code came from, read before the evaluation runs
    run = load_run(run_dir, data_dir, device, overrides)
    cfg = run.cfg
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "evaluate" / split
    L.seed_everything(cfg.seed, workers=True)
    task = VisionLanguageTask(
        run.model,
        run.built.method,
        evaluator=instantiate_node(cfg.task.evaluator, _partial_=True),
        generation=OmegaConf.to_container(cfg.task.generation),
        flops_samples=cfg.flops_samples if split == "test" else 0,
        predictions_dir=str(out),
    )
    trainer = L.Trainer(
        accelerator="cpu" if device == "cpu" else "gpu",
        devices=1,
        precision=cfg.trainer.get("precision", "32-true"),
        deterministic=cfg.trainer.get("deterministic"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = task_data(run)
    if split == "test":
        trainer.test(task, datamodule=datamodule, verbose=False)
    else:
        trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items())}
    evaluator = task.evaluators[split]
    record = {
        "run_dir": str(run_dir),
        "split": split,
        "overrides": list(overrides),
        "metrics": metrics,
        **({"metric_rule": evaluator.rule} if getattr(evaluator, "rule", None) else {}),
        "versions": package_versions(),
        "git": code_state(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RECORD, json.dumps(record, indent=2))
    if split == "test":
        log.info("\n%s", format_summary(cfg, metrics, evaluator.primary, evaluator.breakdown))
    log.info("%s metrics written to %s", split, out / RECORD)
    return metrics


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` arguments: the evaluation settings and the ``task.*`` overrides."""
    settings, overrides = parse_key_values(
        argv,
        "memvp_lab.evaluate",
        SETTINGS,
        ("task.",),
        fixed_model="a finished run's model is fixed; only task settings change how it is evaluated "
        "(task.<key>=<value>, e.g. task.generation.num_beams=5)",
    )
    positive_int(settings, "threads")
    if "run_dir" not in settings:
        raise ConfigError("run_dir=<run dir> is required: a finished run folder (results.json and trainable/)")
    return settings, overrides


def _run(argv: list[str]) -> None:
    settings, overrides = parse(argv)
    evaluate(
        settings["run_dir"],
        split=settings.get("split", "test"),
        overrides=overrides,
        out_dir=settings.get("out_dir"),
        data_dir=settings.get("data_dir"),
        device=settings.get("device", "cpu"),
        threads=positive_int(settings, "threads"),
    )


def main(argv: list[str] | None = None) -> int:
    return run_tool(__doc__, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
