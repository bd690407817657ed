"""Multiple-choice video QA (TVQA, How2QA) over per-video frame features (paper App. B.1).

Question files are JSON Lines, one question per line, in the fields the HERO / VALUE releases
use: ``{"qid", "vid_name", "q", "a0", ..., "a<k>", "answer_idx"}`` (TVQA has 5 answers, How2QA 4).
Features: ``/<vid_name>/features`` of shape (frames, dim) per video, e.g. the [CLS] token of
CLIP ViT-B/32 on 64 frames = (64, 512), in a consolidated ``.h5`` or one ``<vid_name>.h5`` each.
The prompt lists the options as ``(A) ... (B) ...``; the target is the correct letter.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.scienceqa import options_text
from memvp_lab.errors import DataError


def load_jsonl(path: Path) -> list[dict]:
    """Validated questions of a JSON Lines file."""
    if not path.exists():
        raise DataError(f"{path} does not exist")
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {n} is not valid JSON: {err}") from err
        choices = [e[f"a{k}"] for k in range(26) if f"a{k}" in e] if isinstance(e, dict) else []
        if not (
            isinstance(e, dict)
            and isinstance(e.get("q"), str)
            and "vid_name" in e
            and len(choices) >= 2
            and isinstance(e.get("answer_idx"), int)
            and 0 <= e["answer_idx"] < len(choices)
        ):
            raise DataError(
                f"{path} line {n}: needs 'qid', 'vid_name', 'q', answers 'a0', 'a1', ... and an 'answer_idx' among them"
            )
        entries.append(
            {
                "question_id": e.get("qid", n),
                "img_id": str(e["vid_name"]),
                "question": e["q"],
                "choices": [str(c) for c in choices],
                "answer": e["answer_idx"],
            }
        )
    if not entries:
        raise DataError(f"{path} holds no questions (empty split)")
    return entries


class VideoQADataset(Dataset):
    def __init__(self, entries: list[dict], features: FeatureSources, source: str) -> None:
        self.entries, self.features, self.source = entries, features, source

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        letter = string.ascii_uppercase[e["answer"]]
        return {
            "index": i,
            "question_id": e["question_id"],
            "img_id": e["img_id"],
            "question": e["question"],
            "options": options_text(e["choices"]),
            "target": letter,
            "weight": 1.0,
            "answers": [letter],
            "group": "",
            "answer_type": "",
            "tags": [],
            "num_choices": len(e["choices"]),
            "visual": np.asarray(self.features.get(e["img_id"])),
            "has_image": 1.0,
        }
