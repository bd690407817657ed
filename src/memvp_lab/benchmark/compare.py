"""Methods on one backbone, side by side: train step time, inference time, training memory and
LM FLOPs, with ratios against a reference method and the paper's ratios beside them."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from memvp_lab.benchmark.measure import (
    Subject,
    analytic_flops,
    build_for_study,
    measured_flops,
    study_methods,
    time_subjects,
    training_memory_bytes,
    visual_flops,
)
from memvp_lab.benchmark.synthetic_batches import Lengths, input_visual_tokens, synthetic_batch, task_lengths
from memvp_lab.results.paper_numbers import study_reference

log = logging.getLogger(__name__)
# The paper files' metrics (experiments/*.paper.json) and the columns they compare with.
PAPER_METRICS = {
    "time/train_s_per_step": "train_s_per_step",
    "time/eval_s_per_batch": "inference_s_per_batch",
    "memory/peak_cuda_gb": "train_memory_mb",
}

MB = 2**20
# (key, label, format): the columns of the table, each also shown as a ratio to the reference
COLUMNS = (
    ("train_s_per_step", "train s/step", ".3f"),
    ("inference_s_per_batch", "infer s/batch", ".3f"),
    ("train_memory_mb", "train mem. MB", ".0f"),
    ("activation_mb", "activations MB", ".0f"),
    ("lm_gflops_measured", "GFLOPs counted", ".3f"),
    ("lm_gflops_analytic", "GFLOPs Eq.13-15", ".3f"),
    ("visual_gflops_measured", "per-image GFLOPs counted", ".4f"),
    ("visual_gflops_analytic", "per-image GFLOPs formula", ".4f"),
)


def method_overrides(cfg: DictConfig, method: str) -> list[str]:
    return [f"method={method}", *cfg.model_overrides, *(cfg.get("method_overrides") or {}).get(method, [])]


def run(cfg: DictConfig) -> dict:
    subjects: dict[str, Subject] = {}
    rows: dict[str, dict] = {}
    lengths = None
    for method in study_methods(cfg.methods, cfg.model_overrides):
        built, composed = build_for_study(method_overrides(cfg, method))
        model = built.model
        if cfg.get("lengths"):
            lengths = Lengths(int(cfg.lengths.prompt), int(cfg.lengths.answer), built.visual.num_tokens)
        else:
            lengths = task_lengths(composed.task, built.visual.num_tokens)
        batch = synthetic_batch(model, lengths, cfg.train_batch_size, built.visual.feature_dim, cfg.seed)
        eval_batch = synthetic_batch(model, lengths, cfg.eval_batch_size, built.visual.feature_dim, cfg.seed + 1)
        memory_batch = synthetic_batch(model, lengths, cfg.memory_batch_size, built.visual.feature_dim, cfg.seed + 2)
        subjects[method] = Subject(model, batch, eval_batch, lengths.answer)
        counts = model.parameter_counts()
        memory = training_memory_bytes(model, memory_batch)
        del memory_batch
        visual_measured, visual_analytic = visual_flops(model, batch)
        rows[method] = {
            "trainable_params": counts["trainable"],
            "total_params": counts["total"],
            "input_visual_tokens": input_visual_tokens(model, batch),
            "lm_gflops_measured": measured_flops(model, batch) / 1e9,
            "lm_gflops_analytic": analytic_flops(model, lengths, batch) / 1e9,
            "visual_gflops_measured": visual_measured / 1e9,
            "visual_gflops_analytic": visual_analytic / 1e9,
            "activation_mb": memory["activations"] / MB,
            "train_memory_mb": memory["total"] / MB,
        }
        log.info("built %s: %s", method, rows[method])
    train, infer = time_subjects(subjects, cfg.rounds, cfg.warmup)
    for method in subjects:
        rows[method]["train_s_per_step"] = train[method]
        rows[method]["inference_s_per_batch"] = infer[method]
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            subjects[method].train_step()
            rows[method]["train_peak_cuda_mb"] = torch.cuda.max_memory_allocated() / MB
    reference = cfg.reference if cfg.reference in rows else next(iter(rows))
    ratios = {
        m: {k: v / rows[reference][k] for k, v in r.items() if isinstance(v, float) and rows[reference][k]}
        for m, r in rows.items()
    }
    return {
        "study": cfg.name,
        "kind": "compare",
        "description": cfg.description,
        "model_overrides": list(cfg.model_overrides),
        "lengths": vars(lengths),
        "train_batch_size": cfg.train_batch_size,
        "eval_batch_size": cfg.eval_batch_size,
        "memory_batch_size": cfg.memory_batch_size,
        "rounds": cfg.rounds,
        "warmup": cfg.warmup,
        "reference": reference,
        "methods": rows,
        "ratios_to_reference": ratios,
        "paper_ratios": {
            method: {PAPER_METRICS[m]: r for m, r in ratios.items()}
            for method, ratios in study_reference(cfg.get("paper"), list(rows), reference, PAPER_METRICS).items()
        },
    }


def table(result: dict) -> str:
    """Absolute values with the ratio to the reference in brackets; the paper's ratio after it."""
    ref, paper = result["reference"], result.get("paper_ratios") or {}
    head = ["method", "trainable", "visual tokens in input", *(label for _, label, _ in COLUMNS)]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for method, row in result["methods"].items():
        cells = [method, f"{row['trainable_params']:,}", str(row["input_visual_tokens"])]
        for key, _, spec in COLUMNS:
            cell = format(row[key], spec)
            ratio = result["ratios_to_reference"][method].get(key)
            if ratio is not None and method != ref:
                cell += f" ({ratio:.2f}x"
                cell += f"; paper {paper[method][key]:.2f}x)" if key in paper.get(method, {}) else ")"
            cells.append(cell)
        lines.append(" | ".join(cells))
    lengths = result["lengths"]
    return "\n".join(
        [
            f"### {result['study']}: {result['description']}",
            f"Per sample: {lengths['prompt']} prompt + {lengths['answer']} answer tokens, {lengths['visual']} visual "
            f"tokens per image. Batches: train {result['train_batch_size']}, inference {result['eval_batch_size']}, "
            f"memory {result['memory_batch_size']}. Medians of {result['rounds']} interleaved rounds after "
            f"{result['warmup']} warm-up. (ratio: method / {ref})",
            "",
            *lines,
        ]
    )
