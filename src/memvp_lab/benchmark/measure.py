"""The measurements every study shares: FLOPs both ways, training memory, and interleaved timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from omegaconf import DictConfig

from memvp_lab.batch import VLBatch
from memvp_lab.benchmark.synthetic_batches import Lengths, input_visual_tokens
from memvp_lab.config.compose import compose_config
from memvp_lab.methods.memvp.memory import memory_in
from memvp_lab.methods.registry import methods as registered_methods
from memvp_lab.methods.registry import runs_on
from memvp_lab.model.flops import DeltaSpec, MemorySpec, analytic_lm_flops, measure_lm_flops, measure_visual_flops
from memvp_lab.model.vision_language_model import VisionLanguageModel
from memvp_lab.training.factory import Built, build_model


def study_methods(methods, overrides: Sequence[str] = ()) -> list[str]:
    """A study's ``methods``: a list of names, or ``all``: every registered method that runs on the
    backbone ``overrides`` compose to (a newly registered method joins such studies by itself)."""
    if methods != "all":
        return [str(m) for m in methods]
    is_encoder_decoder = compose_config(list(overrides)).backbone.family == "encoder_decoder"
    return [name for name in registered_methods() if runs_on(name, is_encoder_decoder)]


def build_for_study(overrides: Sequence[str], empty: bool = False) -> tuple[Built, DictConfig]:
    """A model composed from ``conf/train.yaml`` with ``overrides`` (random weights are the caller's
    choice, e.g. ``backbone.weights=random``), and the composed config.

    Args:
        empty: build the backbone on the meta device and then allocate it uninitialised: for
            counting FLOPs, where values do not matter, this skips seconds of random init.
    """
    cfg = compose_config(overrides)
    empty = empty and "device" in cfg.backbone  # tiny test backbones are built directly
    if empty:
        cfg.backbone.device = "meta"
    built = build_model(cfg)
    if empty:
        built.model.to_empty(device="cpu")
    return built, cfg


def memory_spec(model: VisionLanguageModel) -> MemorySpec:
    memory = memory_in(model.prompting)  # MemVP's, or ADEM-VL's (the same two matmuls per FFN)
    if memory is None:
        return MemorySpec()
    stacks = [site.stack for site in memory.sites]
    return MemorySpec(
        slots=memory.num_slots, encoder_sites=stacks.count("encoder"), decoder_sites=stacks.count("decoder")
    )


def delta_spec(model: VisionLanguageModel) -> DeltaSpec:
    """Per-token FLOPs of parameter-space deltas (VLoRA) in each stack; none for other methods."""
    prompting = model.prompting
    if not hasattr(prompting, "delta_flops"):
        return DeltaSpec()
    return DeltaSpec(prompting.delta_flops("encoder"), prompting.delta_flops("decoder"))


def analytic_flops(model: VisionLanguageModel, lengths: Lengths, batch: VLBatch) -> int:
    """Paper Eq. 13-15 (generalised, see ``memvp_lab.model.flops``) for one sample of ``lengths``."""
    visual = batch.visual is not None
    return analytic_lm_flops(
        model.lm.config,
        lengths.prompt,
        lengths.answer,
        memory_spec(model) if visual else MemorySpec(),
        visual_tokens=input_visual_tokens(model, batch),
        deltas=delta_spec(model) if visual else DeltaSpec(),
    )


def visual_flops(model: VisionLanguageModel, batch: VLBatch) -> tuple[int, int]:
    """(counted, by formula) FLOPs per image of the work outside the LM: projectors, generators."""
    return int(measure_visual_flops(model, batch)), model.prompting.visual_flops()


def measured_flops(model: VisionLanguageModel, batch: VLBatch, within: str | None = "lm") -> int:
    """FlopCounterMode's count of the LM's work on the batch's first sample (teacher-forced, eval
    mode); ``within=None`` counts the whole model (the visual projector too)."""
    return int(measure_lm_flops(model, batch, max_samples=1, within=within))


def saved_activation_bytes(model: VisionLanguageModel, batch: VLBatch) -> int:
    """Bytes of the tensors a training forward keeps for backward (each storage once, no parameters)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(batch).mean()
    del loss
    return sum(seen.values())


def training_memory_bytes(model: VisionLanguageModel, batch: VLBatch) -> dict[str, int]:
    """What a training step holds at its peak, by parts: every weight, the gradient and two AdamW
    moments of each trainable one, and the activations saved for backward."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for _, p in model.trainable_named_parameters())
    activations = saved_activation_bytes(model, batch)
    return {
        "weights": weights,
        "grads_and_optimizer": 3 * trainable,
        "activations": activations,
        "total": weights + 3 * trainable + activations,
    }


class Subject:
    """One model with its optimizer and batches: the operations the studies time."""

    def __init__(
        self,
        model: VisionLanguageModel,
        train_batch: VLBatch,
        eval_batch: VLBatch,
        answer_tokens: int,
        lr: float = 1e-4,
    ) -> None:
        self.model, self.answer_tokens = model, answer_tokens
        self.train_batch, self.eval_batch = train_batch, eval_batch
        params = [p for _, p in model.trainable_named_parameters()]
        if not params:
            raise ValueError("a benchmark subject needs something to train: its backward pass is what is timed")
        self.optimizer = torch.optim.AdamW(params, lr=lr)

    def train_step(self) -> None:
        """Forward, backward and optimizer step on the training batch."""
        self.model.train()
        loss = self.model(self.train_batch).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def inference(self) -> None:
        """Prefill + generation of exactly the answer length (no early stop)."""
        self.model.eval()
        self.model.generate(self.eval_batch, max_new_tokens=self.answer_tokens, min_new_tokens=self.answer_tokens)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(ops: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each op per round, ops taking turns within a round (A B A B ...), so a slow phase
    of the machine hits all of them alike; warm-up rounds are run and dropped."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    for r in range(warmup + rounds):
        for name, op in ops.items():
            _sync()
            t0 = time.perf_counter()
            op()
            _sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def time_subjects(subjects: dict[str, Subject], rounds: int, warmup: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per training step and per inference batch of each subject, each timed
    interleaved with the others."""
    train = medians(interleaved({k: s.train_step for k, s in subjects.items()}, rounds, warmup))
    infer = medians(interleaved({k: s.inference for k, s in subjects.items()}, rounds, warmup))
    return train, infer
