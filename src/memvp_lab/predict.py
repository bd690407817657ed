"""Answer questions about your own images with a trained adapter:

    python -m memvp_lab.predict run_dir=<run or exported folder> image=<file> question="What color is the circle?"
    python -m memvp_lab.predict run_dir=<dir> images=<folder> question="How many shapes are there?" out=answers.jsonl
    python -m memvp_lab.predict run_dir=<dir> input=<questions.jsonl> out=answers.jsonl

One image prints the answer. A folder (every .jpg/.jpeg/.png in it, sorted) or a JSONL file (one
``{"image": <path>, "question": ..., <other prompt fields>}`` per line; relative image paths are
read from the file's folder) writes one JSON line per question to ``out`` (default
``answers.jsonl``), as answers come. The model is the run's (``memvp_lab.load``): the backbone it
names, its method and vision settings; a checkpoint that does not fit is refused, naming the
difference.

Other settings: ``device=cpu|cuda``, ``batch_size=`` (default 8), ``threads=``, and
``backbone.<key>=`` / ``vision.encoder.<key>=`` (where weights are read from) or
``task.generation.<key>=`` (e.g. ``task.generation.num_beams=5``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

from memvp_lab.data.images import IMAGE_SUFFIXES
from memvp_lab.errors import ConfigError
from memvp_lab.key_value_cli import parse_key_values, positive_int, run_tool
from memvp_lab.predictor import OVERRIDABLE, load

SETTINGS = ("run_dir", "image", "images", "input", "question", "out", "device", "batch_size", "threads")


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    settings, overrides = parse_key_values(
        argv, "memvp_lab.predict", SETTINGS, OVERRIDABLE, example='question="What color is the circle?"'
    )
    if "run_dir" not in settings:
        raise ConfigError("run_dir=<dir> is required: a finished run folder or an exported adapter folder")
    sources = [k for k in ("image", "images", "input") if k in settings]
    if len(sources) != 1:
        raise ConfigError("give exactly one of image=<file>, images=<folder>, input=<questions.jsonl>")
    if sources[0] in ("image", "images") and not settings.get("question"):
        raise ConfigError(f'{sources[0]}= needs question="..."')
    positive_int(settings, "batch_size")
    positive_int(settings, "threads")
    return settings, overrides


def questions_of(settings: dict[str, str]) -> list[dict]:
    """``{"image", "question", ...fields}`` per question, from a folder or a JSONL file."""
    if "images" in settings:
        folder = Path(settings["images"])
        if not folder.is_dir():
            raise ConfigError(f"images={folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"images={folder}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
        return [{"image": str(p), "question": settings["question"]} for p in files]
    path = Path(settings["input"])
    if not path.is_file():
        raise ConfigError(f"input={path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"input={path} line {number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not {"image", "question"} <= set(row):
            raise ConfigError(f'input={path} line {number}: expected {{"image": ..., "question": ...}}')
        image = Path(row["image"])
        rows.append({**row, "image": str(image if image.is_absolute() else path.parent / image)})
    if not rows:
        raise ConfigError(f"input={path}: no questions in it")
    return rows


def _run(argv: list[str]) -> None:
    settings, overrides = parse(argv)
    if settings.get("threads"):
        torch.set_num_threads(positive_int(settings, "threads"))
    rows = None if "image" in settings else questions_of(settings)  # bad input fails before loading
    model = load(settings["run_dir"], device=settings.get("device", "cpu"), overrides=overrides)
    if rows is None:
        print(model.answer(settings["image"], settings["question"]))
        return
    out = Path(settings.get("out", "answers.jsonl"))
    out.parent.mkdir(parents=True, exist_ok=True)
    size = positive_int(settings, "batch_size", 8)
    with out.open("w") as f:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            fields = [{k: v for k, v in r.items() if k not in ("image", "question")} for r in chunk]
            answers = model.answer_batch([r["image"] for r in chunk], [r["question"] for r in chunk], fields, size)
            for row, answer in zip(chunk, answers):
                f.write(json.dumps({**row, "answer": answer}) + "\n")
            f.flush()  # answers so far are kept if a later image fails
    print(f"{len(rows)} answers -> {out}")


def main(argv: list[str] | None = None) -> int:
    return run_tool(__doc__, _run, argv, level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
