"""Latency of the language model with and without input-space visual tokens across text lengths
(paper Fig. 2: LLaMA-7B, LoRA training and inference, 256 visual tokens, output length 1)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from memvp_lab.benchmark.measure import Subject, build_for_study, time_subjects
from memvp_lab.benchmark.synthetic_batches import Lengths, input_visual_tokens, synthetic_batch, text_only
from memvp_lab.results.paper_numbers import study_points

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    built, _ = build_for_study([f"method={cfg.method}", *cfg.model_overrides])
    model, visual = built.model, built.visual
    subjects: dict[str, Subject] = {}
    for length in cfg.text_lengths:
        lengths = Lengths(int(length) - cfg.answer_tokens, cfg.answer_tokens, visual.num_tokens)
        train = synthetic_batch(model, lengths, cfg.train_batch_size, visual.feature_dim, cfg.seed)
        infer = synthetic_batch(model, lengths, cfg.eval_batch_size, visual.feature_dim, cfg.seed + 1)
        subjects[f"{length}/with"] = Subject(model, train, infer, cfg.answer_tokens)
        subjects[f"{length}/without"] = Subject(model, text_only(train), text_only(infer), cfg.answer_tokens)
    tokens = input_visual_tokens(model, next(iter(subjects.values())).train_batch)
    train_s, infer_s = time_subjects(subjects, cfg.rounds, cfg.warmup)
    points = []
    for length in cfg.text_lengths:
        w, wo = f"{length}/with", f"{length}/without"
        points.append(
            {
                "text_tokens": int(length),
                "train_s_with": train_s[w],
                "train_s_without": train_s[wo],
                "inference_s_with": infer_s[w],
                "inference_s_without": infer_s[wo],
                "train_ratio": train_s[w] / train_s[wo],
                "inference_ratio": infer_s[w] / infer_s[wo],
            }
        )
        log.info("%s", points[-1])
    return {
        "study": cfg.name,
        "kind": "text_length",
        "description": cfg.description,
        "method": cfg.method,
        "model_overrides": list(cfg.model_overrides),
        "visual_tokens": tokens,
        "answer_tokens": cfg.answer_tokens,
        "train_batch_size": cfg.train_batch_size,
        "eval_batch_size": cfg.eval_batch_size,
        "rounds": cfg.rounds,
        "warmup": cfg.warmup,
        "points": points,
        "paper": study_points(cfg.get("paper")),
    }


def table(result: dict) -> str:
    paper = result.get("paper") or {}
    lines = [
        f"### {result['study']}: {result['description']}",
        f"{result['method']} with {result['visual_tokens']} input-space visual tokens vs the same model on the "
        f"text alone; text length includes {result['answer_tokens']} answer token(s). Batches: train "
        f"{result['train_batch_size']}, inference {result['eval_batch_size']}. Medians of {result['rounds']} "
        "interleaved rounds.",
        "",
        "text tokens | train s with / without | ratio | inference s with / without | ratio",
        "--- | --- | --- | --- | ---",
    ]
    for p in result["points"]:
        ref = paper.get(p["text_tokens"]) or paper.get(str(p["text_tokens"])) or {}
        tr = f"{p['train_ratio']:.2f}x" + (f" (paper {ref['train_ratio']}x)" if "train_ratio" in ref else "")
        inf = f"{p['inference_ratio']:.2f}x" + (
            f" (paper {ref['inference_ratio']}x)" if "inference_ratio" in ref else ""
        )
        lines.append(
            f"{p['text_tokens']} | {p['train_s_with']:.3f} / {p['train_s_without']:.3f} | {tr} | "
            f"{p['inference_s_with']:.3f} / {p['inference_s_without']:.3f} | {inf}"
        )
    return "\n".join(lines)
