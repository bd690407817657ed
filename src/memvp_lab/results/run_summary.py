"""The human-readable summary printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(cfg: DictConfig, metrics: dict[str, float], primary: str, breakdown: Sequence[str] = ()) -> str:
    """A fixed-width table of the run's headline numbers (``primary``: e.g. ``vqa_score``)."""
    rows = [
        ("run", f"method={cfg.method.name} backbone={cfg.backbone.name} vision={cfg.vision.name} task={cfg.task.name}"),
        (f"test {primary}", _fmt(metrics.get(f"test/{primary}"), ".4f")),
    ]
    for key in breakdown:  # e.g. vqa_score/color, or a sibling metric such as bleu4
        value = metrics.get(f"test/{primary}/{key}", metrics.get(f"test/{key}"))
        rows.append((f"  {key}", _fmt(value, ".4f")))
    trainable, total = metrics.get("params/trainable"), metrics.get("params/total")
    rows += [
        ("trainable params", f"{int(trainable):,}" if trainable is not None else "n/a"),
        ("total params", f"{int(total):,}" if total is not None else "n/a"),
        ("trainable share", _fmt(100 * trainable / total if trainable and total else None, ".3f") + " %"),
        ("LM GFLOPs / sample", _fmt(metrics.get("flops/lm_gflops_per_sample"), ".3f")),
        ("per-image GFLOPs (projector / generator)", _fmt(metrics.get("flops/visual_gflops_per_sample"), ".4f")),
        ("train s / step", _fmt(metrics.get("time/train_s_per_step"), ".3f")),
        ("eval s / batch", _fmt(metrics.get("time/eval_s_per_batch"), ".3f")),
        (
            "train / test wall s",
            f"{_fmt(metrics.get('time/fit_wall_s'), '.0f')} / {_fmt(metrics.get('time/test_wall_s'), '.0f')}",
        ),
        ("peak memory (RSS)", _fmt(metrics.get("memory/peak_rss_gb"), ".2f") + " GB"),
    ]
    width = max(len(k) for k, _ in rows)
    line = "=" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} : {v}" for k, v in rows), line])
