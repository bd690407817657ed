"""Efficiency benchmark: training step time, training activation memory, inference time and LM
FLOPs of several methods on one backbone, measured side by side in one process.

    python -m memvp_lab.bench                                   # the CPU-sized default (conf/bench.yaml)
    python -m memvp_lab.bench backbone=t5_base backbone.weights=random methods=[memvp,vl_pet,lora,vl_adapter]

Cost is a property of the architecture, not of trained weights, so models are built at their real
size (random weights where a backbone offers them) and fed synthetic batches whose prompt, answer
and visual lengths are exactly the configured ones. Timings interleave the methods (A B A B ...)
after warm-up rounds and report medians, so a slow phase of the machine hits every method alike.
Memory: the bytes of activations a training step keeps for its backward pass (every saved
tensor counted once, parameters excluded), which is what separates methods on the same frozen
model; on a GPU, also the peak CUDA allocation of a training step.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from memvp_lab.batch import VLBatch
from memvp_lab.factory import build_model
from memvp_lab.flops import MemorySpec, analytic_lm_flops, count_flops, eager_attention
from memvp_lab.methods.memvp.memory import VisualMemory
from memvp_lab.model import VisionLanguageModel
from memvp_lab.paths import config_dir, write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lengths:
    """Tokens per sample: the text prompt, the answer, and the visual tokens of one image."""

    prompt: int
    answer: int
    visual: int


def synthetic_batch(model: VisionLanguageModel, lengths: Lengths, batch_size: int, feature_dim: int,
                    seed: int = 0) -> VLBatch:
    """A batch of random tokens and features with exactly ``lengths`` (no padding)."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.lm.get_input_embeddings().num_embeddings
    prompt = torch.randint(10, vocab, (batch_size, lengths.prompt), generator=g)
    answer = torch.randint(10, vocab, (batch_size, lengths.answer), generator=g)
    if model.is_encoder_decoder:
        input_ids, labels = prompt, answer
    else:
        input_ids = torch.cat([prompt, answer], dim=1)
        labels = torch.cat([torch.full_like(prompt, -100), answer], dim=1)
    ones = torch.ones(batch_size)
    return VLBatch(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels,
        prompt_ids=prompt, prompt_mask=torch.ones_like(prompt),
        visual=torch.randn(batch_size, lengths.visual, feature_dim, generator=g), has_image=ones,
        weights=ones, indices=torch.arange(batch_size),
    )


def input_visual_tokens(model: VisionLanguageModel, batch: VLBatch) -> int:
    """Visual tokens a method adds to the LM's input sequence (0 for MemVP and text-only)."""
    one = batch.sample(0)
    with torch.no_grad(), model.visual_context(one):
        inputs, prefix = model.prompting.lm_inputs(model.lm, one.input_ids, one.attention_mask, one,
                                                   generation=False)
    if "inputs_embeds" in inputs:
        return inputs["inputs_embeds"].shape[1] - one.input_ids.shape[1]
    return prefix


def memory_spec(model: VisionLanguageModel) -> MemorySpec:
    memory = model.prompting
    if not isinstance(memory, VisualMemory):
        return MemorySpec()
    stacks = [site.stack for site in memory.sites]
    return MemorySpec(slots=memory.num_slots, encoder_sites=stacks.count("encoder"),
                      decoder_sites=stacks.count("decoder"))


def analytic_flops(model: VisionLanguageModel, lengths: Lengths, batch: VLBatch) -> int:
    """Paper Eq. 13-15 (generalised, see ``memvp_lab.flops``) for one sample of ``lengths``."""
    return analytic_lm_flops(model.lm.config, lengths.prompt, lengths.answer, memory_spec(model),
                             visual_tokens=input_visual_tokens(model, batch))


@torch.no_grad()
def measured_flops(model: VisionLanguageModel, batch: VLBatch) -> int:
    """FlopCounterMode's count of the LM's work on one sample (teacher-forced, eval mode)."""
    was_training = model.training
    model.eval()
    try:
        with eager_attention(model.lm):
            return count_flops(model, batch.sample(0), within="lm")
    finally:
        model.train(was_training)


def saved_activation_bytes(model: VisionLanguageModel, batch: VLBatch) -> int:
    """Bytes of the tensors a training forward keeps for backward (each storage once, no parameters)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(batch).mean()
    del loss
    return sum(seen.values())


class Subject:
    """One method's model, optimizer and batches, with the operations the benchmark times."""

    def __init__(self, name: str, model: VisionLanguageModel, train_batch: VLBatch, eval_batch: VLBatch,
                 lengths: Lengths, lr: float = 1e-4) -> None:
        self.name, self.model, self.lengths = name, model, lengths
        self.train_batch, self.eval_batch = train_batch, eval_batch
        params = [p for _, p in model.trainable_named_parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=lr) if params else None

    def train_step(self) -> None:
        self.model.train()
        loss = self.model(self.train_batch).mean()
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def inference(self) -> None:
        """Prefill + generation of exactly the answer length (no early stop)."""
        self.model.eval()
        self.model.generate(self.eval_batch, max_new_tokens=self.lengths.answer, min_new_tokens=self.lengths.answer)


def interleaved(ops: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each op per round, ops taking turns within a round; warm-up rounds dropped."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    for r in range(warmup + rounds):
        for name, op in ops.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            op()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def method_config(cfg: DictConfig, method: str) -> DictConfig:
    """The training config of ``method`` on the benchmark's backbone and vision."""
    overrides = [f"method={method}", *cfg.model_overrides, *(cfg.get("method_overrides") or {}).get(method, [])]
    return compose(config_name="train", overrides=overrides)


def run(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    subjects: dict[str, Subject] = {}
    rows: dict[str, dict] = {}
    for method in cfg.methods:
        mcfg = method_config(cfg, method)
        built = build_model(mcfg)
        model = built.model
        lengths = Lengths(cfg.lengths.prompt, cfg.lengths.answer, built.visual.num_tokens)
        train_batch = synthetic_batch(model, lengths, cfg.train_batch_size, built.visual.feature_dim, cfg.seed)
        eval_batch = synthetic_batch(model, lengths, cfg.eval_batch_size, built.visual.feature_dim, cfg.seed + 1)
        subjects[method] = Subject(method, model, train_batch, eval_batch, lengths)
        counts = model.parameter_counts()
        rows[method] = {
            "trainable_params": counts["trainable"], "total_params": counts["total"],
            "input_visual_tokens": input_visual_tokens(model, train_batch),
            "lm_gflops_measured": measured_flops(model, train_batch) / 1e9,
            "lm_gflops_analytic": analytic_flops(model, lengths, train_batch) / 1e9,
            "train_activation_mb": saved_activation_bytes(model, train_batch) / 2**20,
        }
        log.info("built %s: %s", method, rows[method])
    train_times = interleaved({m: s.train_step for m, s in subjects.items()}, cfg.rounds, cfg.warmup)
    infer_times = interleaved({m: s.inference for m, s in subjects.items()}, cfg.rounds, cfg.warmup)
    for method in subjects:
        rows[method]["train_s_per_step"] = statistics.median(train_times[method])
        rows[method]["inference_s_per_batch"] = statistics.median(infer_times[method])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            subjects[method].train_step()
            rows[method]["train_peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    reference = cfg.reference if cfg.reference in rows else next(iter(rows))
    ratios = {m: {k: (v / rows[reference][k] if rows[reference].get(k) else None)
                  for k, v in r.items() if isinstance(v, float)} for m, r in rows.items()}
    return {
        "backbone": cfg.model_overrides, "lengths": OmegaConf.to_container(cfg.lengths),
        "train_batch_size": cfg.train_batch_size, "eval_batch_size": cfg.eval_batch_size,
        "rounds": cfg.rounds, "warmup": cfg.warmup, "reference": reference,
        "threads": torch.get_num_threads(), "device": "cuda" if torch.cuda.is_available() else "cpu",
        "methods": rows, "ratios_to_reference": ratios,
    }


COLUMNS = (("train_s_per_step", "train s/step", ".3f"), ("inference_s_per_batch", "infer s/batch", ".3f"),
           ("train_activation_mb", "act. MB", ".1f"), ("lm_gflops_measured", "GFLOPs meas.", ".3f"),
           ("lm_gflops_analytic", "GFLOPs Eq.13-15", ".3f"))


def format_table(result: dict) -> str:
    """Absolute values and, in brackets, the ratio to the reference method."""
    ref = result["reference"]
    head = ["method", "trainable", "vis. tokens", *(label for _, label, _ in COLUMNS)]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for method, row in result["methods"].items():
        cells = [method, f"{row['trainable_params']:,}", str(row["input_visual_tokens"])]
        for key, _, spec in COLUMNS:
            ratio = result["ratios_to_reference"][method].get(key)
            cells.append(f"{format(row[key], spec)} ({ratio:.2f}x)" if ratio is not None else format(row[key], spec))
        lines.append(" | ".join(cells))
    return "\n".join([f"ratios in brackets: method / {ref}", *lines])


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="bench")
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.json", json.dumps(result, indent=2))
    table = format_table(result)
    write_text_atomic(out / "bench.md", table + "\n")
    log.info("\n%s\nwritten to %s", table, out / "bench.json")


if __name__ == "__main__":
    main()
