"""``results.json``: everything a results table needs about one run, completed or failed."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from memvp_lab.paths import write_text_atomic

PACKAGES = ("memvp_lab", "torch", "transformers", "lightning", "hydra-core", "timm", "torchmetrics", "wandb")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_state(cwd: Path | None = None) -> dict[str, object]:
    """The commit of the code that ran and whether the work tree had uncommitted changes."""
    where = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=where,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha, "dirty": dirty}


@functools.cache
def code_state() -> dict[str, object]:
    """:func:`git_state` of this package's checkout, read once per process. ``train`` reads it
    before training, so a record names the commit of the code the process imported even when a
    commit lands (or a file changes) while the run trains; the later runs of a multirun share it,
    as they share the imported code."""
    return git_state()


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """Where a run or a benchmark was measured."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_results(
    path: Path, metrics: dict[str, float], cfg: DictConfig | None, metric_rule: str | None = None
) -> dict:
    """Writes metrics + environment + resolved config as JSON; returns what was written.

    ``metric_rule`` names the rule that scored the headline metric where a task has more than one
    (VQA accuracy: ``official`` or ``vl_t5``).
    """
    outcome = {
        "status": "completed",
        **{k: metrics[k] for k in sorted(metrics)},
        **({"metric_rule": metric_rule} if metric_rule else {}),
    }
    return _write_record(path, outcome, cfg)


def write_failure(
    path: Path, error: BaseException, cfg: DictConfig | None, step: int | None, checkpoint: Path | None
) -> dict:
    """Writes the results.json of a run that ended with an error: ``status: failed``, the error,
    the optimizer step it was reached at and the newest checkpoint it left, with the same
    environment and config as a completed run; no metric, so no table mistakes it for a score."""
    outcome = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "failed_at_step": step,
        "last_checkpoint": str(checkpoint) if checkpoint else None,
    }
    return _write_record(path, outcome, cfg)


def _write_record(path: Path, outcome: dict, cfg: DictConfig | None) -> dict:
    """``outcome`` + where it ran (versions, commit, machine) + the config, written atomically."""
    record = {
        **outcome,
        "versions": package_versions(),
        "git": code_state(),
        "machine": machine(),
        "config": _config(cfg),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2, default=str))
    return record


def _config(cfg: DictConfig | None) -> dict | None:
    """The resolved config; for a config whose values fail their schema (a failed run's may), the
    values resolved without the schema's types; failing that, unresolved."""
    if cfg is None:
        return None
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - whatever made the run fail may make resolving fail too
        raw = OmegaConf.to_container(cfg, resolve=False)
    try:
        return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    except Exception:  # noqa: BLE001
        return raw


def failed(record: dict) -> bool:
    return record.get("status") == "failed"


def load_runs(roots: list[Path], experiment: str) -> list[dict]:
    """Every results.json under ``roots`` whose config names ``experiment``."""
    runs = []
    for root in roots:
        for path in sorted(Path(root).rglob("results.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a run still writing, or a foreign file
            if (record.get("config") or {}).get("experiment_name") == experiment:
                runs.append(record)
    return runs


def load_wandb_runs(project: str, experiment: str, api=None) -> list[dict]:
    """The runs of ``experiment`` in a W&B project (``entity/project``), as results.json-like records:
    the run summary's metrics plus its uploaded config (needs network access and a W&B login)."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs = []
    for run in api.runs(project, filters={"config.experiment_name": experiment}):
        summary = dict(run.summary)
        metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not k.startswith("_")}
        runs.append({**metrics, "config": dict(run.config)})
    return runs
