"""Task metrics: plain functions plus torchmetrics ``Metric``s that aggregate across processes."""

from memvp_lab.metrics.captioning import CaptionScores, caption_scores
from memvp_lab.metrics.choices import ChoiceAccuracy, choice_index
from memvp_lab.metrics.exact_match import ExactMatch, exact_match
from memvp_lab.metrics.scienceqa_categories import problem_categories, scienceqa_scores
from memvp_lab.metrics.vqa_score import VQAScore, normalize_answer, vqa_score

__all__ = [
    "CaptionScores",
    "ChoiceAccuracy",
    "ExactMatch",
    "VQAScore",
    "caption_scores",
    "choice_index",
    "exact_match",
    "normalize_answer",
    "problem_categories",
    "scienceqa_scores",
    "vqa_score",
]
