"""Task metrics: plain functions plus torchmetrics ``Metric``s that aggregate across processes."""

from memvp_lab.metrics.vqa_score import VQAScore, normalize_answer, vqa_score

__all__ = ["VQAScore", "normalize_answer", "vqa_score"]
