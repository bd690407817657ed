"""Trainable-parameter counts of every method on every paper backbone, from the models built.

    python -m memvp_lab.params            # a table beside the paper's numbers
    python -m memvp_lab.params --json     # {"<backbone>": {"<method>": <trainable count>}}

Each model is composed from the same configs as training (``method=<m> backbone=<b>
vision=<paper's encoder>``) with ``backbone.weights=random`` on the ``meta`` device: real module
structure, no weights allocated, nothing downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from memvp_lab.config.compose import compose_config
from memvp_lab.errors import ConfigError
from memvp_lab.methods.registry import methods, runs_on
from memvp_lab.paths import config_dir
from memvp_lab.results.paper_numbers import trainable_decimals, trainable_m
from memvp_lab.training.factory import build_model

# The visual encoder each backbone's paper rows use: CLIP RN101 grid features (Table 1), CLIP
# ViT-L/14 with adapters (Tables 2-3).
PAPER_VISION = {
    "bart_base": "clip_rn101",
    "t5_base": "clip_rn101",
    "llama_7b": "clip_vit_l14",
    "llama_13b": "clip_vit_l14",
}
BACKBONES = tuple(PAPER_VISION)


def method_names() -> list[str]:
    """Every registered method: the paper's rows in its order, then the others by name."""
    paper = [m for row in trainable_m().values() for m in row]
    ordered = list(dict.fromkeys(paper))
    return [m for m in ordered if m in methods()] + sorted(set(methods()) - set(ordered))


def is_encoder_decoder(backbone: str) -> bool:
    return compose_config([f"backbone={backbone}"]).backbone.family == "encoder_decoder"


def vision_of(backbone: str) -> str:
    """The paper's encoder for its backbones; for others that of its rows of the same family."""
    if backbone in PAPER_VISION:
        return PAPER_VISION[backbone]
    return "clip_rn101" if is_encoder_decoder(backbone) else "clip_vit_l14"


def method_of(name: str) -> str:
    """The registered method a ``conf/method`` file configures (``vlora_official`` -> ``vlora``)."""
    if name in methods():
        return name
    if not (config_dir() / "method" / f"{name}.yaml").is_file():
        raise ConfigError(f"--method {name}: no such method; registered: {', '.join(sorted(methods()))}")
    return str(compose_config([f"method={name}"]).method.name)


def pairs(backbones=BACKBONES, names=None) -> list[tuple[str, str]]:
    """(backbone, method) for every method (or method config) that runs on the backbone's family."""
    names = method_names() if names is None else names
    registered = {m: method_of(m) for m in names}
    out = []
    for b in backbones:
        family = is_encoder_decoder(b)
        out += [(b, m) for m in names if runs_on(registered[m], family)]
    return out


def count(backbone: str, method: str, overrides: Sequence[str] = ()) -> dict[str, int]:
    """Trainable and total parameters of ``method`` on ``backbone`` with the paper's vision encoder
    (``overrides``: more config overrides, e.g. a method's switches)."""
    base = [
        f"backbone={backbone}",
        f"method={method}",
        f"vision={vision_of(backbone)}",
        "backbone.weights=random",
        "vision.encoder.weights=random",
        "task.images_on_the_fly=true",
        "logger=none",
    ]
    return build_model(compose_config([*base, *overrides]), device="meta").model.parameter_counts()


def matches(backbone: str, method: str, trainable: int) -> bool | None:
    paper = trainable_m().get(backbone, {}).get(method)
    if paper is None:
        return None
    return round(trainable / 1e6, trainable_decimals()[backbone]) == paper


def table(counts: dict[str, dict[str, int]]) -> str:
    lines = ["| backbone | method | trainable | ours (M) | paper (M) | match |", "|---|---|---:|---:|---:|:---:|"]
    printed, decimals = trainable_m(), trainable_decimals()
    for b, row in counts.items():
        for m, n in row.items():
            paper = printed.get(b, {}).get(m)
            ok = matches(b, m, n)
            lines.append(
                f"| {b} | {m} | {n:,} | {n / 1e6:.{decimals.get(b, 2)}f} | "
                f"{'-' if paper is None else f'{paper:.{decimals[b]}f}'} | "
                f"{'-' if ok is None else 'yes' if ok else 'NO'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memvp_lab.params", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print {backbone: {method: trainable}} as JSON")
    parser.add_argument("--backbone", nargs="*", default=list(BACKBONES), help=f"default: {' '.join(BACKBONES)}")
    parser.add_argument(
        "--method", nargs="*", default=None, help=f"default: every registered method ({' '.join(method_names())})"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for every count, e.g. vision=clip_vit_l14_336")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING)
    counts: dict[str, dict[str, int]] = {}
    try:
        for b, m in pairs(args.backbone, args.method):
            counts.setdefault(b, {})[m] = count(b, m, args.overrides)["trainable"]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(counts, indent=2) if args.json else table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
