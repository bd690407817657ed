"""What MemVP's memory costs over the same language model on the text alone.

Per memory layer of L tokens, width d and n slots, Eq. 13 and 15 give the FLOPs ratio
1 + 4ndL / (4Ld(6d + L)) = 1 + n / (6d + L). The memory term is two batched matmuls per FFN; a
step-time ratio well above the FLOPs ratio would be overhead of the implementation.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from memvp_lab.benchmark.measure import (
    Subject,
    analytic_flops,
    build_for_study,
    measured_flops,
    memory_spec,
    time_subjects,
)
from memvp_lab.benchmark.synthetic_batches import synthetic_batch, task_lengths, text_only
from memvp_lab.model.flops import lm_shape

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    rows = {}
    for name, overrides in cfg.cases.items():
        built, composed = build_for_study(["method=memvp", *overrides])
        model, visual = built.model, built.visual
        lengths = task_lengths(composed.task, visual.num_tokens)
        train = synthetic_batch(model, lengths, cfg.train_batch_size, visual.feature_dim, cfg.seed)
        infer = synthetic_batch(model, lengths, cfg.eval_batch_size, visual.feature_dim, cfg.seed + 1)
        subjects = {
            "memvp": Subject(model, train, infer, lengths.answer),
            "text": Subject(model, text_only(train), text_only(infer), lengths.answer),
        }
        train_s, infer_s = time_subjects(subjects, cfg.rounds, cfg.warmup)
        spec = memory_spec(model)
        d = lm_shape(model.lm.config)["d"]
        # the memory stack's sequence: the encoder input (encoder-decoders), else prompt + answer
        seq = lengths.prompt if model.is_encoder_decoder else lengths.prompt + lengths.answer
        rows[name] = {
            "d_model": d,
            "slots": spec.slots,
            "memory_layers": spec.encoder_sites + spec.decoder_sites,
            "memory_seq_tokens": seq,
            "prompt": lengths.prompt,
            "answer": lengths.answer,
            "layer_flops_ratio_eq": 1 + spec.slots / (6 * d + seq),
            "lm_flops_ratio_analytic": analytic_flops(model, lengths, train)
            / analytic_flops(model, lengths, text_only(train)),
            "lm_flops_ratio_counted": measured_flops(model, train) / measured_flops(model, text_only(train)),
            # the projector maps each image's features once per call, outside the LM
            "model_flops_ratio_counted": measured_flops(model, train, within=None)
            / measured_flops(model, text_only(train), within=None),
            "train_s_memvp": train_s["memvp"],
            "train_s_text": train_s["text"],
            "inference_s_memvp": infer_s["memvp"],
            "inference_s_text": infer_s["text"],
            "train_ratio": train_s["memvp"] / train_s["text"],
            "inference_ratio": infer_s["memvp"] / infer_s["text"],
        }
        log.info("%s: %s", name, rows[name])
        del built, model, subjects
    return {
        "study": cfg.name,
        "kind": "overhead",
        "description": cfg.description,
        "train_batch_size": cfg.train_batch_size,
        "eval_batch_size": cfg.eval_batch_size,
        "rounds": cfg.rounds,
        "warmup": cfg.warmup,
        "cases": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"### {result['study']}: {result['description']}",
        f"Batches: train {result['train_batch_size']}, inference {result['eval_batch_size']}; medians of "
        f"{result['rounds']} interleaved rounds. Ratios: MemVP / the same LM on the text alone.",
        "",
        "backbone | d | n slots x layers | L | FLOPs ratio per layer 1+n/(6d+L) | LM FLOPs ratio (Eq. / counted) "
        "| + projector (counted) | train s/step MemVP / text | ratio | inference s MemVP / text | ratio",
        "--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---",
    ]
    for name, r in result["cases"].items():
        lines.append(
            f"{name} | {r['d_model']} | {r['slots']} x {r['memory_layers']} | {r['memory_seq_tokens']} | "
            f"{r['layer_flops_ratio_eq']:.3f} | {r['lm_flops_ratio_analytic']:.3f} / {r['lm_flops_ratio_counted']:.3f} | "
            f"{r['model_flops_ratio_counted']:.3f} | "
            f"{r['train_s_memvp']:.3f} / {r['train_s_text']:.3f} | {r['train_ratio']:.3f} | "
            f"{r['inference_s_memvp']:.3f} / {r['inference_s_text']:.3f} | {r['inference_ratio']:.3f}"
        )
    return "\n".join(lines)
