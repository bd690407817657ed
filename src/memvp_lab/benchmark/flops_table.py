"""LM FLOPs per sample of every method x backbone x task, beside the paper's FLOPs column.

The paper does not state the text lengths behind its FLOPs. They are derived here from one row of
its table (full fine-tuning on every backbone: two numbers per dataset for two unknowns, the
average prompt and answer lengths) with the analytic count, stored in the task configs
(``task.lengths``), and then every other row is predicted from them by counting FLOPs on the
real-size models (``FlopCounterMode``, which sees the adapters too) and checked against the paper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import DictConfig

from memvp_lab.benchmark.measure import analytic_flops, build_for_study, measured_flops, memory_spec, study_methods
from memvp_lab.benchmark.synthetic_batches import input_visual_tokens, synthetic_batch, task_lengths
from memvp_lab.config.compose import compose_config
from memvp_lab.model.flops import MemorySpec, analytic_lm_flops
from memvp_lab.results.paper_numbers import paper_column, paper_spec

log = logging.getLogger(__name__)
FLOPS_METRIC = "flops/lm_gflops_per_sample"


@dataclass(frozen=True)
class Shape:
    """What the analytic count needs of one built model: its LM config and what it adds to it."""

    config: object
    visual_tokens: int
    memory: MemorySpec

    def gflops(self, prompt: int, answer: int) -> float:
        return analytic_lm_flops(self.config, prompt, answer, self.memory, visual_tokens=self.visual_tokens) / 1e9


def derive_lengths(
    shapes: list[Shape], paper: list[float], max_prompt: int = 64, max_answer: int = 40
) -> tuple[int, int, float]:
    """The (prompt, answer) token lengths whose analytic FLOPs come closest to ``paper`` on every
    shape at once (smallest worst relative error; ties to the shorter lengths), and that error."""
    best: tuple[float, int, int] | None = None
    for prompt in range(1, max_prompt + 1):
        for answer in range(1, max_answer + 1):
            error = max(abs(shape.gflops(prompt, answer) / value - 1) for shape, value in zip(shapes, paper))
            if best is None or error < best[0] - 1e-12:
                best = (error, prompt, answer)
    error, prompt, answer = best
    return prompt, answer, error


def run(cfg: DictConfig) -> dict:
    paper = paper_column(paper_spec(cfg.paper), FLOPS_METRIC)
    stored = {task: compose_config([f"task={task}"]).task for task in cfg.tasks}
    cells: dict[str, dict[str, dict]] = {}
    shapes: dict[str, Shape] = {}
    for backbone in cfg.backbones:
        for method in study_methods(cfg.methods, [f"backbone={backbone}"]):
            row = f"{backbone}/{method}"
            built, _ = build_for_study(
                [
                    f"method={method}",
                    f"backbone={backbone}",
                    *cfg.backbone_overrides,
                    f"vision={cfg.vision}",
                    f"task={cfg.tasks[0]}",
                ],
                empty=True,
            )
            model, visual = built.model, built.visual
            cells[row] = {}
            for task in cfg.tasks:
                lengths = task_lengths(stored[task], visual.num_tokens)
                batch = synthetic_batch(model, lengths, 1, visual.feature_dim)
                cells[row][task] = {
                    "measured": measured_flops(model, batch) / 1e9,
                    "analytic": analytic_flops(model, lengths, batch) / 1e9,
                    "paper": paper.get(row, {}).get(task),
                }
            if method == cfg.derive_from:
                shapes[backbone] = Shape(model.lm.config, input_visual_tokens(model, batch), memory_spec(model))
            log.info("%s: %s", row, {t: round(c["measured"], 3) for t, c in cells[row].items()})
            del built, model
    derived = {}
    for task in cfg.tasks:
        values = [paper.get(f"{b}/{cfg.derive_from}", {}).get(task) for b in cfg.backbones]
        if None in values or set(shapes) != set(cfg.backbones):
            log.info("%s: no paper FLOPs for every %s row, lengths not derived", task, cfg.derive_from)
            continue
        prompt, answer, error = derive_lengths([shapes[b] for b in cfg.backbones], values)
        derived[task] = {
            "prompt": prompt,
            "answer": answer,
            "fit_error": error,
            "stored": {"prompt": int(stored[task].lengths.prompt), "answer": int(stored[task].lengths.answer)},
        }
    for row in cells.values():
        for cell in row.values():
            cell["error"] = None if cell["paper"] is None else cell["measured"] / cell["paper"] - 1
    errors = [
        abs(c["error"])
        for r, row in cells.items()
        for c in row.values()
        if c["error"] is not None and not r.endswith("/" + cfg.derive_from)
    ]
    return {
        "study": cfg.name,
        "kind": "flops_table",
        "description": cfg.description,
        "paper": cfg.paper,
        "derive_from": cfg.derive_from,
        "tasks": list(cfg.tasks),
        "derived_lengths": derived,
        "cells": cells,
        "max_abs_error_other_rows": max(errors) if errors else None,
        "tolerance": cfg.tolerance,
    }


def table(result: dict) -> str:
    tasks = result["tasks"]
    lines = [
        f"### {result['study']}: {result['description']}",
        "",
        f"Lengths derived from the `{result['derive_from']}` row (analytic count, 1 multiply-add = 2 FLOPs, "
        "encoder + decoder + LM head, teacher-forced), as stored in `conf/task/*.yaml`:",
        "",
        "task | prompt tokens | answer tokens | worst error on the fitted row | stored in task config",
        "--- | --- | --- | --- | ---",
    ]
    for task, d in result["derived_lengths"].items():
        lines.append(
            f"{task} | {d['prompt']} | {d['answer']} | {100 * d['fit_error']:.1f}% | "
            f"{d['stored']['prompt']} + {d['stored']['answer']}"
        )
    head = ["backbone/method", *(f"{t} GFLOPs (paper)" for t in tasks)]
    lines += ["", " | ".join(head), " | ".join("---" for _ in head)]
    for row, by_task in result["cells"].items():
        cells = [row]
        for task in tasks:
            c = by_task[task]
            cell = f"{c['measured']:.2f}"
            if c["paper"] is not None:
                cell += f" ({c['paper']:.1f}, {100 * c['error']:+.0f}%)"
            cells.append(cell)
        lines.append(" | ".join(cells))
    worst = result["max_abs_error_other_rows"]
    if worst is not None:
        verdict = "within" if worst <= result["tolerance"] else "OUTSIDE"
        lines += [
            "",
            f"Worst deviation over the rows not used for the fit: {100 * worst:.1f}% "
            f"({verdict} the {100 * result['tolerance']:.0f}% tolerance).",
        ]
    return "\n".join(lines)
