"""What a task scores and how its predictions are written: one ``Evaluator`` per task kind.

An evaluator holds the task's metrics (torchmetrics, so they aggregate across processes),
turns generated text into what the metric needs, names its headline metric and writes
predictions in the dataset's official submission format. Tasks choose one in their config
(``task.evaluator._target_``); the LightningModule makes one per evaluated split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from memvp_lab.batch import VLBatch
from memvp_lab.metrics.captioning import CaptionScores
from memvp_lab.metrics.choices import ChoiceAccuracy, choice_index
from memvp_lab.metrics.exact_match import ExactMatch
from memvp_lab.metrics.scienceqa_categories import CATEGORIES
from memvp_lab.metrics.vqa_score import VQAScore


def metric_key(name: str) -> str:
    """A group name usable inside a metric key (``yes/no`` -> ``yes_no``)."""
    return name.replace("/", "_").replace(" ", "_")


class Evaluator(nn.Module):
    """Base: ``update`` per batch, ``compute`` once per evaluation (then ``reset``).

    Attributes:
        primary: the headline metric's key (e.g. ``vqa_score``), logged as ``<split>/<primary>``.
        breakdown: the groups shown under the headline in the run summary.
    """

    primary = "score"
    breakdown: Sequence[str] = ()  # key suffixes: <split>/<primary>/<suffix>

    def update(self, predictions: list[str], batch: VLBatch) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        for m in self.children():
            m.reset()

    def submission(self, rows: list[dict]) -> Any:
        """Predictions (``{"question_id", "prediction"}`` rows) in the dataset's official format."""
        return [{"question_id": r["question_id"], "answer": r["prediction"]} for r in rows]


def _floats(values: dict[str, torch.Tensor], prefix: str, overall: bool = True) -> dict[str, float]:
    """``{prefix: overall, prefix/<group>: ...}`` as floats (``overall=False`` leaves it out)."""
    out = {prefix: float(values.pop("overall"))} if overall else {}
    out.update({f"{prefix}/{metric_key(k)}": float(v) for k, v in values.items() if k != "overall"})
    return out


class VQAEvaluator(Evaluator):
    """VQA accuracy, per question type and per answer type (VQAv2, shapes).

    Args:
        question_types, answer_types: the groups reported as ``vqa_score/<type>`` and
            ``vqa_score/answer_type/<type>``.
        tags: further groups read from the questions' ``tags`` (a question may carry several),
            reported as ``vqa_score/<tag>``; shapes_vqa tags each question with its scene's
            object count (``objects_1`` ... ``objects_3``).
        rule: ``"official"`` (the current GT-Vision-Lab script) or ``"vl_t5"`` (the evaluator
            behind the paper's Table 1), see ``memvp_lab.metrics.vqa_score``.
    """

    primary = "vqa_score"

    def __init__(
        self,
        question_types: Sequence[str] = (),
        answer_types: Sequence[str] = (),
        tags: Sequence[str] = (),
        rule: str = "official",
    ) -> None:
        super().__init__()
        self.rule = rule
        self.breakdown = (
            tuple(metric_key(q) for q in question_types)
            if question_types
            else tuple(f"answer_type/{metric_key(a)}" for a in answer_types)
        )
        self.breakdown += tuple(metric_key(t) for t in tags)
        # One metric scores each sample once; a sample belongs to its question type, its answer
        # type (prefixed: shapes has a question type and an answer type both named yes/no) and
        # its tags.
        self.names = {
            **{g: f"vqa_score/{metric_key(g)}" for g in (*question_types, *tags)},
            **{f"answer_type/{a}": f"vqa_score/answer_type/{metric_key(a)}" for a in answer_types},
        }
        self.scores = VQAScore(groups=list(self.names), rule=rule)

    def update(self, predictions, batch):
        n = len(predictions)
        memberships = [
            [g, f"answer_type/{a}", *t]
            for g, a, t in zip(batch.groups or [""] * n, batch.answer_types or [""] * n, batch.tags or [()] * n)
        ]
        self.scores.update(predictions, batch.answers, memberships, batch.indices)

    def compute(self):
        values = self.scores.compute()
        out = {"vqa_score": float(values.pop("overall"))}
        out.update({self.names[g]: float(v) for g, v in values.items()})
        return out


class ExactMatchEvaluator(Evaluator):
    """Exact-match accuracy against the accepted answers (GQA)."""

    primary = "accuracy"

    def __init__(self, groups: Sequence[str] = ()) -> None:
        super().__init__()
        self.breakdown = tuple(metric_key(g) for g in groups)
        self.accuracy = ExactMatch(groups=groups)

    def update(self, predictions, batch):
        self.accuracy.update(predictions, batch.answers, batch.groups, batch.indices)

    def compute(self):
        return _floats(self.accuracy.compute(), "accuracy")

    def submission(self, rows):  # GQA's official format
        return [{"questionId": str(r["question_id"]), "prediction": r["prediction"]} for r in rows]


class ChoiceEvaluator(Evaluator):
    """Multiple choice: the first capital letter of the generated text picks the option.

    ``batch.answers[i][0]`` is the correct letter, ``batch.tags[i]`` the sample's categories and
    ``batch.num_choices[i]`` how many options it had.
    """

    primary = "accuracy"

    def __init__(self, categories: Sequence[str] = ()) -> None:
        super().__init__()
        self.breakdown = tuple(metric_key(c) for c in categories)
        self.accuracy = ChoiceAccuracy(groups=categories)

    def update(self, predictions, batch):
        predicted = [choice_index(p, n) for p, n in zip(predictions, batch.num_choices)]
        correct = [choice_index(a[0], n) for a, n in zip(batch.answers, batch.num_choices)]
        self.accuracy.update(predicted, correct, batch.tags, batch.indices)

    def compute(self):
        return _floats(self.accuracy.compute(), "accuracy")


class ScienceQAEvaluator(ChoiceEvaluator):
    """ScienceQA: accuracy overall and in the official 8 categories; predictions as
    ``{qid: choice index}`` (-1 when no option letter was generated)."""

    def __init__(self) -> None:
        super().__init__(CATEGORIES)

    def submission(self, rows):
        return {str(r["question_id"]): choice_index(r["prediction"], r.get("num_choices", 26)) for r in rows}


class CaptionEvaluator(Evaluator):
    """COCO caption metrics (CIDEr headline) over all images of the split at once."""

    primary = "cider"
    breakdown = ("bleu4", "meteor", "rouge_l")

    def __init__(self, meteor: bool = True) -> None:
        super().__init__()
        self.scores = CaptionScores(meteor=meteor)

    def update(self, predictions, batch):
        self.scores.update(predictions, batch.answers, batch.indices)

    def compute(self):
        return {k: float(v) for k, v in self.scores.compute().items()}

    def submission(self, rows):  # the COCO caption results format
        return [{"image_id": r["question_id"], "caption": r["prediction"]} for r in rows]
