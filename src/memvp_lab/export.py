"""Write a finished run's adapter as a self-contained folder that others can use:

    python -m memvp_lab.export run_dir=<run dir> out=<dir>
    hf upload <user>/<name> <dir> .          # share it on the Hugging Face Hub (after `hf auth login`)

The folder holds the trained tensors (``trainable.safetensors`` + ``trainable.json``, with the
backbone and vision fingerprint), the feature standardisation the task applied
(``feature_standardization.safetensors``; computed from the run's data for runs that predate it),
the run's config (``config.yaml``: method, backbone, vision, task prompt and generation), its
``results.json`` and a model card (``README.md``: metrics, trainable parameters, FLOPs, speed, the
command that trained it, how to use it). ``python -m memvp_lab.predict run_dir=<dir>`` and
``memvp_lab.load(<dir>)`` take the folder as they take the run; the run folder is not needed.

An existing folder is never overwritten unless ``overwrite=true``; the folder is written under a
temporary name and renamed, so an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from memvp_lab.errors import ConfigError
from memvp_lab.key_value_cli import parse_key_values, run_tool
from memvp_lab.predictor import CONFIG, feature_stats_from_data, needs_feature_stats
from memvp_lab.training.checkpoint import FEATURE_STATS, META, TENSORS, read_meta, save_feature_stats
from memvp_lab.training.finished_run import TRAINABLE, run_config

log = logging.getLogger(__name__)

SETTINGS = ("run_dir", "out", "overwrite")
CARD = "README.md"
COST = (
    ("params/trainable", "trainable parameters", "{:,.0f}"),
    ("params/total", "total parameters", "{:,.0f}"),
    ("flops/lm_gflops_per_sample", "LM GFLOPs per sample", "{:.3f}"),
    ("time/train_s_per_step", "train s/step", "{:.3f}"),
    ("time/eval_s_per_batch", "eval s/batch", "{:.3f}"),
    ("memory/peak_rss_gb", "peak RSS (GB)", "{:.2f}"),
)


def training_command(run_dir: Path) -> str:
    """The command line that trained the run, from Hydra's record of its overrides."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return "python -m memvp_lab.train  # overrides not recorded (no .hydra/overrides.yaml)"
    return shlex.join(["python", "-m", "memvp_lab.train", *(yaml.safe_load(overrides.read_text()) or [])])


def model_card(record: dict, meta: dict, command: str) -> str:
    """The exported folder's README.md: what it is, what it scored and cost, how to use it."""
    cfg = record["config"]
    method, backbone, task = cfg["method"]["name"], cfg["backbone"]["name"], cfg["task"]["name"]
    source = (meta.get("backbone") or {}).get("source") or meta.get("base_model") or backbone
    hub_id = source if "/" in source and not source.startswith(("/", ".", "pypi:", "random")) else None
    front = {"library_name": "memvp_lab", "tags": ["memvp_lab", method, "vision-language", "peft"]}
    if hub_id:
        front["base_model"] = hub_id
    metrics = {k: v for k, v in record.items() if k.startswith("test/") and isinstance(v, (int, float))}
    rule = f" (VQA rule: {record['metric_rule']})" if record.get("metric_rule") else ""
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {method} on {backbone} for {task}",
        "",
        f"An adapter trained with memvp_lab: method `{method}` on the frozen backbone `{backbone}` "
        f"(weights: `{source}`), vision `{cfg['vision']['name']}`, task `{task}`, seed {cfg.get('seed')}. "
        f"Only the {meta.get('parameters', 0):,} parameters in `trainable.safetensors` were trained.",
        "",
        f"## Test results{rule}",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {k.removeprefix('test/')} | {v:.4f} |" for k, v in sorted(metrics.items())),
        "",
        "## Cost",
        "",
        "| | |",
        "|---|---:|",
        *(f"| {label} | {fmt.format(record[key])} |" for key, label, fmt in COST if key in record),
        "",
        "## How it was trained",
        "",
        "```bash",
        command,
        "```",
        "",
        f"memvp_lab {record.get('versions', {}).get('memvp_lab', '?')}, commit "
        f"{(record.get('git') or {}).get('sha', '?')}; the full config is `{CONFIG}`.",
        "",
        "## Use",
        "",
        "```bash",
        'python -m memvp_lab.predict run_dir=<this folder> image=photo.jpg question="What color is the circle?"',
        "python -m memvp_lab.predict run_dir=<this folder> input=questions.jsonl out=answers.jsonl",
        "```",
        "",
        "```python",
        "import memvp_lab",
        'model = memvp_lab.load("<this folder>")',
        'print(model.answer("photo.jpg", "What color is the circle?"))',
        "```",
        "",
        "From the Hub: `hf download <user>/<name> --local-dir <folder>`, then the same with that folder.",
        "",
    ]
    return "\n".join(lines)


def export(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Writes the run's adapter folder at ``out``; returns it."""
    run_dir, out = Path(run_dir), Path(out)
    cfg = run_config(run_dir)  # refuses a folder that is not a finished, successful run
    trainable = run_dir / TRAINABLE
    if not (trainable / META).is_file():
        raise ConfigError(
            f"run_dir={run_dir}: no trained tensors in {trainable} (runs write them unless save_trainable=false)"
        )
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"out={out} exists and is not empty; choose another folder or set overwrite=true")
    record = json.loads((run_dir / "results.json").read_text())
    meta = read_meta(trainable)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in (TENSORS, META):
            shutil.copy2(trainable / name, tmp / name)
        if (trainable / FEATURE_STATS).is_file():
            shutil.copy2(trainable / FEATURE_STATS, tmp / FEATURE_STATS)
        elif needs_feature_stats(cfg):
            from memvp_lab.training.factory import build_model

            built = build_model(cfg)  # the data module reads the tokenizer and the visual settings
            save_feature_stats(tmp, *feature_stats_from_data(cfg, built, trainable))
        (tmp / CONFIG).write_text(OmegaConf.to_yaml(cfg))
        shutil.copy2(run_dir / "results.json", tmp / "results.json")
        (tmp / CARD).write_text(model_card(record, meta, training_command(run_dir)))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s -> %s", run_dir, out)
    return out


def _run(argv: list[str]) -> None:
    settings, _ = parse_key_values(argv, "memvp_lab.export", SETTINGS, example="out=my-adapter")
    if not {"run_dir", "out"} <= set(settings):
        raise ConfigError("run_dir=<run dir> and out=<folder> are required")
    if settings.get("overwrite", "false") not in ("true", "false"):
        raise ConfigError(f"overwrite={settings['overwrite']}: expected true or false")
    print(export(settings["run_dir"], settings["out"], settings.get("overwrite") == "true"))


def main(argv: list[str] | None = None) -> int:
    return run_tool(__doc__, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
