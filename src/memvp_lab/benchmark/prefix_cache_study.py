"""What the frozen-prefix cache saves per MemVP training step (``method.cache_frozen_prefix``).

With memory from decoder layer k on, the layers below k see text only. Over texts seen before the
cache starts the forward pass at layer k; the backward pass stops at layer k either way. Each case
times full and cached steps interleaved on the same model, optimizer and batch (after the warm-up
round every text of the batch is cached, as for templated questions), and checks that both give the
same loss.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from memvp_lab.benchmark.measure import Subject, build_for_study, interleaved, medians
from memvp_lab.benchmark.synthetic_batches import synthetic_batch, task_lengths

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    rows = {}
    for name, overrides in cfg.cases.items():
        built, composed = build_for_study(["method=memvp", "method.cache_frozen_prefix=true", *overrides])
        model = built.model
        cache = model.prefix_cache
        lengths = task_lengths(composed.task, built.visual.num_tokens)
        batch = synthetic_batch(model, lengths, cfg.train_batch_size, built.visual.feature_dim, cfg.seed)
        subject = Subject(model, batch, batch, lengths.answer, lr=0.0)  # lr 0: every round sees the same model

        def full_step(model=model, subject=subject) -> None:  # this case's model, bound now
            with model.prefix_cache_off():
                subject.train_step()

        model.eval()  # no dropout: the two losses must agree exactly
        with torch.no_grad():
            loss_cached = model(batch).mean().item()  # fills the cache
            with model.prefix_cache_off():
                loss_full = model(batch).mean().item()
        seconds = medians(interleaved({"full": full_step, "cached": subject.train_step}, cfg.rounds, cfg.warmup))
        layers = len(model.lm.base_model.layers)
        rows[name] = {
            "layers": layers,
            "skipped_layers": cache.num_layers,
            "prompt": lengths.prompt,
            "answer": lengths.answer,
            "train_s_full": seconds["full"],
            "train_s_cached": seconds["cached"],
            "speedup": seconds["full"] / seconds["cached"],
            "loss_abs_diff": abs(loss_full - loss_cached),
            "hit_rate": cache.hit_rate,
        }
        log.info("%s: %s", name, rows[name])
        del built, model, subject, cache
    return {
        "study": cfg.name,
        "kind": "prefix_cache",
        "description": cfg.description,
        "train_batch_size": cfg.train_batch_size,
        "rounds": cfg.rounds,
        "warmup": cfg.warmup,
        "cases": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"### {result['study']}: {result['description']}",
        f"Batch {result['train_batch_size']}; medians of {result['rounds']} interleaved rounds of forward + "
        "backward + AdamW; every text of the batch cached after the warm-up round.",
        "",
        "case | memory in layers | train s/step full | cached | speed-up | loss difference",
        "--- | --- | --- | --- | --- | ---",
    ]
    for name, r in result["cases"].items():
        lines.append(
            f"{name} | {r['skipped_layers']}-{r['layers'] - 1} of {r['layers']} | {r['train_s_full']:.3f} | "
            f"{r['train_s_cached']:.3f} | {r['speedup']:.2f}x | {r['loss_abs_diff']:.1e}"
        )
    return "\n".join(lines)
