"""VQAv2-style question files (Karpathy split, as distributed with VL-T5 / VL-Adapter).

Each file is a JSON list of entries ``{"img_id", "question_id", "sent", "label": {answer: score},
"answer_type", "question_type"}`` and optionally ``"tags"`` (more groups a question counts toward,
e.g. the shapes scenes' ``objects_2``). The official annotations (``{"annotations": [{"question_id",
"answers": [{"answer": ...} x 10], ...}]}``) provide the ten human answers the score uses.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from memvp_lab.data.feature_files import FeatureStore
from memvp_lab.errors import DataError

log = logging.getLogger(__name__)

REQUIRED_FIELDS = {"img_id": str, "question_id": (int, str), "sent": str, "label": dict}


def read_json(path: Path):
    if not path.exists():
        raise DataError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from err


def load_questions(path: Path) -> list[dict]:
    """Reads and validates a Karpathy-split question file."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path} must hold a JSON list of question entries, found {type(entries).__name__}")
    if not entries:
        raise DataError(f"{path} holds no questions (empty split)")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataError(f"{path} entry {i} is not an object")
        for key, kind in REQUIRED_FIELDS.items():
            if not isinstance(e.get(key), kind):
                raise DataError(
                    f"{path} entry {i} (question_id={e.get('question_id')!r}): field {key!r} "
                    f"is missing or not a {kind if isinstance(kind, type) else kind[0]}"
                )
        if any(not isinstance(s, (int, float)) for s in e["label"].values()):
            raise DataError(f"{path} entry {i} (question_id={e['question_id']!r}): label scores must be numbers")
    return entries


def load_annotations(path: Path) -> dict:
    """question_id -> list of the human answers, from an official-format annotation file."""
    data = read_json(path)
    return _annotations(path, data)


def _annotations(path: Path, data) -> dict:
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list):
        raise DataError(f"{path} must be an object with an 'annotations' list")
    out = {}
    for i, a in enumerate(anns):
        try:
            out[a["question_id"]] = [x["answer"] for x in a["answers"]]
        except (KeyError, TypeError) as err:
            raise DataError(f"{path} annotation {i}: needs 'question_id' and 'answers' [{{'answer': ...}}]") from err
    return out


class VQADataset(Dataset):
    """Questions with their visual features.

    In training mode each access samples one answer with probability proportional to its
    score, and the loss weight is that score (VL-T5 convention; a question with no scored answer
    gets an empty target and weight 0, as VL-T5's loader gives it). In evaluation mode the target is
    the top-scored answer and the references are the human answers of the annotation file.

    Args:
        entries: validated question entries.
        features: where the visual features are read.
        references: question_id -> human answers (VQAv2 evaluation); None: the answers with a
            positive score in ``label`` are the accepted ones (GQA).
        train: sampling behaviour (see above).
        source: the file the entries came from (for error messages).
    """

    def __init__(
        self, entries: list[dict], features: FeatureStore, references: dict | None, train: bool, source: str
    ) -> None:
        self.entries = entries
        self.features = features
        self.train = train
        self.references = references
        self.source = source
        if not train and references is not None:
            missing = [e["question_id"] for e in entries if e["question_id"] not in references]
            if missing:
                raise DataError(
                    f"{len(missing)} questions of {source} have no human answers in the annotation "
                    f"file, e.g. question_id={missing[0]!r}"
                )

    def __len__(self) -> int:
        return len(self.entries)

    def _references(self, entry: dict, label: dict, answer: str) -> list[str]:
        if self.references is not None:
            return self.references[entry["question_id"]]
        accepted = sorted(label, key=label.get, reverse=True)
        return accepted or [answer]

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        label = {a: float(s) for a, s in e["label"].items() if s > 0}
        if self.train and not label:  # no answer in the vocabulary: VL-T5 trains "" with weight 0
            answer, weight = "", 0.0
        elif self.train:
            answers, scores = zip(*label.items())
            answer = random.choices(answers, weights=scores, k=1)[0]
            weight = label[answer]
        else:
            answer = max(label, key=label.get) if label else ""
            weight = 1.0
        visual = self.features.get(e["img_id"])
        return {
            "index": i,
            "question_id": e["question_id"],
            "img_id": e["img_id"],
            "question": e["sent"],
            "target": answer,
            "weight": weight,
            "answers": self._references(e, label, answer),
            "group": e.get("question_type", ""),
            "answer_type": e.get("answer_type", ""),
            "tags": list(e.get("tags", ())),
            "visual": np.asarray(visual),
            "has_image": 1.0,
        }
