"""ScienceQA (Lu et al., 2022) as the MemVP / LaVIN code reads it.

Files under the root: ``problems.json`` (qid -> {question, choices, answer, hint, image, subject,
grade, split, ...}), ``pid_splits.json`` ({split: [qid, ...]}), ``images/<split>/<qid>/image.png``
for problems with an image, optionally ``captions.json`` ({"captions": {qid: text}}).

Prompt (paper Table 6, ``QCM-A``): ``Question: {question}\\nContext: {context}\\nOptions: (A) ...
(B) ...\\nResponse: The answer is`` and target `` {letter}.``; the context is the hint (plus the
caption when asked), ``N/A`` when empty. Evaluation generates one token and reads its first
capital letter. Problems without an image get zero visual input and ``has_image=0``.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.images import load_image
from memvp_lab.data.vqa import read_json
from memvp_lab.errors import DataError
from memvp_lab.metrics.scienceqa_categories import problem_categories

REQUIRED = {"question": str, "choices": list, "answer": int}


def load_problems(path: Path) -> dict:
    problems = read_json(path)
    if not isinstance(problems, dict) or not problems:
        raise DataError(f"{path} must be a non-empty object qid -> problem")
    for qid, p in problems.items():
        for key, kind in REQUIRED.items():
            if not isinstance(p, dict) or not isinstance(p.get(key), kind):
                raise DataError(f"{path} problem {qid!r}: field {key!r} is missing or not a {kind.__name__}")
        if not 0 <= p["answer"] < len(p["choices"]) or len(p["choices"]) > 26:
            raise DataError(
                f"{path} problem {qid!r}: answer {p['answer']} is not one of its {len(p['choices'])} choices"
            )
    return problems


def options_text(choices: list[str]) -> str:
    return " ".join(f"({string.ascii_uppercase[i]}) {c}" for i, c in enumerate(choices))


class ScienceQADataset(Dataset):
    """Args:
    problems: parsed ``problems.json``.
    qids: the split's problem ids.
    features: pre-extracted features keyed by qid, or None to load images (``image_root``).
    image_root: ``<root>/images``; images are ``<image_root>/<split>/<qid>/image.png``.
    image_size: square size images are resized to.
    visual_shape: (tokens, dim) of the zero input of problems without an image.
    captions: qid -> caption added to the context, or None.
    split, source: for image paths and messages.
    """

    def __init__(
        self,
        problems: dict,
        qids: list[str],
        features: FeatureSources | None,
        image_root: Path,
        image_size: int,
        visual_shape: tuple[int, int],
        captions: dict | None,
        split: str,
        source: str,
    ) -> None:
        missing = [q for q in qids if q not in problems]
        if missing:
            raise DataError(f"{source}: {len(missing)} {split} ids are not in problems.json, e.g. {missing[0]!r}")
        if not qids:
            raise DataError(f"{source}: split {split!r} is empty")
        self.problems, self.features, self.captions = problems, features, captions
        self.image_root, self.image_size, self.visual_shape, self.split = image_root, image_size, visual_shape, split
        self.source = source
        # img_id is the qid for problems with an image (feature stores key them so), None otherwise.
        self.entries = [{"qid": q, "img_id": q if problems[q].get("image") else None} for q in qids]
        if features is None:
            absent = [e["qid"] for e in self.entries if e["img_id"] and not self._image_path(e["qid"]).exists()]
            if absent:
                raise DataError(f"{len(absent)} {split} images are missing, e.g. {self._image_path(absent[0])}")

    def _image_path(self, qid: str) -> Path:
        return self.image_root / self.split / qid / "image.png"

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        qid = self.entries[i]["qid"]
        p = self.problems[qid]
        context = " ".join(x for x in (p.get("hint") or "", (self.captions or {}).get(qid, "")) if x).strip()
        has_image = bool(p.get("image"))
        sample = {
            "index": i,
            "question_id": qid,
            "img_id": qid if has_image else None,
            "question": p["question"],
            "context": context or "N/A",
            "options": options_text(p["choices"]),
            "target": f"{string.ascii_uppercase[p['answer']]}.",
            "weight": 1.0,
            "answers": [string.ascii_uppercase[p["answer"]]],
            "group": p.get("subject", ""),
            "answer_type": "",
            "tags": problem_categories(p),
            "num_choices": len(p["choices"]),
            "has_image": float(has_image),
        }
        if self.features is not None:
            sample["visual"] = (
                np.asarray(self.features.get(qid)) if has_image else np.zeros(self.visual_shape, dtype=np.float32)
            )
        else:
            sample["visual"] = np.zeros((0, 0), dtype=np.float32)  # computed from the pixels by the model
            sample["pixels"] = (
                load_image(self._image_path(qid), self.image_size)
                if has_image
                else np.zeros((3, self.image_size, self.image_size), dtype=np.float32)
            )
        return sample
