"""The one LightningModule every method trains and evaluates through."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from memvp_lab.batch import VLBatch
from memvp_lab.errors import CheckpointMismatch, NonFiniteLossError
from memvp_lab.methods.contract import MethodConfig, Schedule
from memvp_lab.metrics.evaluators import Evaluator, VQAEvaluator
from memvp_lab.model.flops import measure_lm_flops, measure_visual_flops
from memvp_lab.model.vision_language_model import VisionLanguageModel
from memvp_lab.paths import write_text_atomic
from memvp_lab.rng import restore_rng_states, rng_states
from memvp_lab.training.optim import param_groups

log = logging.getLogger(__name__)


def lr_factor(step: int, warmup: int, total: int, schedule: Schedule, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule is Schedule.constant:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule is Schedule.cosine:
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return min_ratio + (1 - min_ratio) * (1 - progress)


class VisionLanguageTask(L.LightningModule):
    """Trains a ``VisionLanguageModel`` on answer generation and scores generated answers.

    Args:
        model: the model (frozen LM + the method's modules).
        method: the method config (optimisation settings).
        evaluator: makes the task's ``Evaluator`` (one per evaluated split); default: VQA score.
        generation: ``max_new_tokens`` and ``num_beams``.
        flops_samples: test samples whose LM FLOPs are measured.
        predictions_dir: where ``predictions_<split>.json`` is written (rank 0).
    """

    def __init__(
        self,
        model: VisionLanguageModel,
        method: MethodConfig,
        evaluator: Callable[[], Evaluator] | None,
        generation: dict,
        flops_samples: int,
        predictions_dir: str | None,
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.generation = dict(generation)
        self.flops_samples = flops_samples
        self.predictions_dir = Path(predictions_dir) if predictions_dir else None
        make = evaluator or VQAEvaluator
        self.evaluators = torch.nn.ModuleDict({split: make() for split in ("val", "test")})
        self.lm_flops_per_sample: float | None = None
        self._predictions: list[dict] = []
        self._flops_batch: VLBatch | None = None
        # Checkpoints hold only the trainable tensors (see on_save_checkpoint); on_load_checkpoint
        # checks them against the model itself, so Lightning's own key check is relaxed.
        self.strict_loading = False
        # Pretrained models load in eval mode; as in any PEFT run, the frozen LM's own dropout is
        # active while training (Lightning switches to eval for evaluation and back).
        self.train()

    # ------------------------------------------------------------------ training
    def training_step(self, batch: VLBatch, batch_idx: int) -> torch.Tensor:
        per_sample = self.model(batch)
        loss = (per_sample * batch.weights).mean()
        # The global batch's loss (the mean over processes; shards are equal in size): what is
        # logged, and what decides whether training may go on. One all-reduce per step in DDP.
        global_loss = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        if not bool(torch.isfinite(global_loss)):
            # Every process sees the same reduced value, so all stop together before the update
            # (none is left waiting in a gradient all-reduce).
            raise NonFiniteLossError(
                f"training loss is {global_loss.item()} at optimizer step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); the run stops before updating the weights, and its "
                "checkpoints hold the last good state. Lower method.lr or raise method.warmup_steps."
            )
        self.log("train/loss", global_loss, prog_bar=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self):
        groups = param_groups(self.model.trainable_named_parameters(), self.method)
        optimizer = torch.optim.AdamW(groups, lr=self.method.lr, betas=tuple(self.method.betas), eps=self.method.eps)
        total = int(self.trainer.estimated_stepping_batches)
        m = self.method
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, m.warmup_steps, total, m.schedule, m.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------- checkpoints
    def _trainable_keys(self) -> set[str]:
        return {f"model.{name}" for name, _ in self.model.trainable_named_parameters()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keeps the trainable tensors only (the frozen model comes from its own weights) and adds
        what an exact resume needs: the random generators and how far into its epoch training got."""
        keep = self._trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint["memvp_lab"] = {
            "rng": rng_states(),
            "data_position": {"epoch": self.current_epoch, "batches": progress.processed},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        expected, found = self._trainable_keys(), set(checkpoint["state_dict"])
        if expected != found:
            missing, unexpected = sorted(expected - found), sorted(found - expected)
            raise CheckpointMismatch(
                f"the checkpoint does not fit this model (another method or config?): missing {len(missing)} "
                f"trainable tensors {missing[:3]}, unexpected {len(unexpected)} {unexpected[:3]}"
            )
        state = checkpoint.get("memvp_lab")
        if state is None or self._trainer is None:
            return
        restore_rng_states(state["rng"])
        datamodule = self.trainer.datamodule
        if hasattr(datamodule, "resume_at"):
            datamodule.resume_at(**state["data_position"])

    # ---------------------------------------------------------------- evaluation
    def _evaluate(self, split: str, batch: VLBatch) -> list[str]:
        preds = self.model.generate(batch, **self.generation)
        self.evaluators[split].update(preds, batch)
        return preds

    def _log_scores(self, split: str) -> None:
        evaluator = self.evaluators[split]
        values = evaluator.compute()  # already reduced across processes: no sync_dist
        self.log_dict({f"{split}/{k}": float(v) for k, v in values.items()}, prog_bar=False)
        evaluator.reset()

    def _record(self, batch: VLBatch, preds: list[str]) -> None:
        rows = [{"question_id": q, "prediction": a} for q, a in zip(batch.question_ids, preds)]
        for row, n in zip(rows, batch.num_choices or []):
            row["num_choices"] = n
        self._predictions.extend(rows)

    def _write_predictions(self, split: str) -> None:
        """``predictions_<split>.json`` in the task's official format (rank 0, all ranks gathered)."""
        predictions, self._predictions = self._predictions, []
        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, predictions)
            predictions = [p for part in gathered for p in part]
        # A DistributedSampler pads the last batch with repeats: keep one answer per question.
        unique = {p["question_id"]: p for p in predictions}
        if self.predictions_dir is not None and self.trainer.is_global_zero:
            self.predictions_dir.mkdir(parents=True, exist_ok=True)
            submission = self.evaluators[split].submission(list(unique.values()))
            write_text_atomic(self.predictions_dir / f"predictions_{split}.json", json.dumps(submission))

    def on_train_end(self) -> None:
        cache = self.model.prefix_cache
        if cache is not None:
            log.info(
                "frozen prefix cache: %d distinct texts, %.1f%% of training sequences started at layer %d",
                len(cache),
                100 * cache.hit_rate,
                cache.num_layers,
            )

    def on_validation_epoch_start(self) -> None:
        self._predictions = []

    def validation_step(self, batch: VLBatch, batch_idx: int) -> None:
        self._record(batch, self._evaluate("val", batch))

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")
        if not self.trainer.sanity_checking:
            self._write_predictions("val")  # the latest validation's answers

    def on_test_epoch_start(self) -> None:
        self._predictions = []

    def test_step(self, batch: VLBatch, batch_idx: int) -> None:
        if batch_idx == 0:
            self._flops_batch = batch  # measured after the timed test loop
        self._record(batch, self._evaluate("test", batch))

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")
        if self.flops_samples > 0 and self._flops_batch is not None:
            self.lm_flops_per_sample = measure_lm_flops(self.model, self._flops_batch, self.flops_samples)
            self.log("flops/lm_gflops_per_sample", self.lm_flops_per_sample / 1e9)
            # projectors / generators: once per image, outside the LM
            visual = measure_visual_flops(self.model, self._flops_batch, 1)
            self.log("flops/visual_gflops_per_sample", visual / 1e9)
            self._flops_batch = None
        self._write_predictions("test")
