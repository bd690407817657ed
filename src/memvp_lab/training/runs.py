"""One run's folder and its history: the resolvers in run folder names, checkpoint discovery,
resume, the W&B run id kept across restarts, and keeping a finished result when a rerun fails."""

from __future__ import annotations

import json
import logging
import os
import secrets
import warnings
import zipfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from memvp_lab.errors import ConfigError
from memvp_lab.paths import write_text_atomic
from memvp_lab.results.records import failed

log = logging.getLogger(__name__)


# Overrides that do not say what a run is (where it writes, how it logs) stay out of run names.
_NOT_IN_NAMES = ("hydra.", "paths.", "logger", "trainer.enable_progress_bar", "experiment=")


def hydra_config():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def run_name(fallback: str) -> str:
    """The run's overrides (``method=lora,seed=1``), or ``fallback`` when it has none."""
    hc = hydra_config()
    overrides = [o for o in (hc.overrides.task if hc else []) if not o.startswith(_NOT_IN_NAMES)]
    return ",".join(sorted(overrides)) or fallback


def sweep_group(experiment: str | None, fallback: str) -> str:
    """The experiment's name (or ``fallback``), plus the sweep folder's name in a multirun: one
    group per sweep."""
    from hydra.types import RunMode

    prefix = experiment or fallback
    hc = hydra_config()
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        return f"{prefix}/{Path(hc.sweep.dir).name}"
    return prefix


# Lightning cannot see that the training loader resumes mid-epoch (ResumableSampler, positioned by
# VisionLanguageTask.on_load_checkpoint) and would warn that it does not.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def register_resolvers() -> None:
    """``${pid:}``, ``${run_name:...}`` and ``${sweep_group:...}``, used in ``conf/train.yaml``'s
    run folder and logger names (idempotent)."""
    if not OmegaConf.has_resolver("pid"):
        # Part of every run folder name: two runs started in the same second never share a folder.
        OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)
    for name, fn in (("run_name", run_name), ("sweep_group", sweep_group)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


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


PREVIOUS_RECORD = "results.previous.json"  # a completed record a rerun in its folder moved aside


def keep_completed_record(path: Path) -> None:
    """Moves a completed run's results.json aside (``results.previous.json``) before a rerun in the
    same folder records its failure there, so a failed rerun never erases a finished result."""
    try:
        completed = not failed(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, AttributeError):
        return
    if completed:
        path.replace(path.with_name(PREVIOUS_RECORD))


# The settings that decide what a run computes; where it writes and logs do not. The torch thread
# count does too (it sets the order of float sums), compared as the count a run used.
_WHAT_A_RUN_IS = ("seed", "backbone", "vision", "task", "method", "trainer")

# torch's thread count when the process started (all cores), before any run set its own: what
# `threads: null` means, also for the later jobs of a multirun whose earlier jobs set a count.
DEFAULT_THREADS = torch.get_num_threads()


def run_threads(cfg: DictConfig) -> int:
    """The torch intra-op thread count a run of ``cfg`` uses: ``threads``, or torch's default."""
    return int(cfg.get("threads") or DEFAULT_THREADS)


def changed_settings(recorded: dict, cfg: DictConfig) -> list[str]:
    """``key: recorded → now`` for each setting that decides what a run computes and differs
    between a finished run's results.json and ``cfg``, the torch thread count included (the one
    the run used, ``machine.torch_threads``); a key only one side has (a setting added or retired
    since) is not a difference. Data and cache folders compare by what lies under them,
    so moving the data folder (``MEMVP_LAB_DATA``) changes nothing."""
    old, new = recorded.get("config") or {}, OmegaConf.to_container(cfg, resolve=True)

    def leaves(config: dict) -> dict[str, object]:
        roots = {
            str(v): f"<{k}>" for k, v in (config.get("paths") or {}).items() if k in ("data_dir", "cache_dir") and v
        }
        out: dict[str, object] = {}

        def walk(node, key: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, f"{key}.{k}" if key else str(k))
                return
            if isinstance(node, str):
                for root, name in roots.items():
                    node = node.replace(root, name) if node.startswith(root) else node
            out[key] = node

        for section in _WHAT_A_RUN_IS:
            if section in config:
                walk(config[section], section)
        return out

    before, now = leaves(old), leaves(new)
    if threads := (recorded.get("machine") or {}).get("torch_threads"):
        before["threads"], now["threads"] = threads, run_threads(cfg)
    return [f"{k}: {before[k]!r} → {now[k]!r}" for k in sorted(before.keys() & now.keys()) if before[k] != now[k]]
