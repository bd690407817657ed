"""COCO Captions in Karpathy's split file (``dataset_coco.json``), as VL-T5 / VL-Adapter read it.

``{"images": [{"filename": "COCO_val2014_000000391895.jpg", "cocoid": 391895, "split":
"train" | "restval" | "val" | "test", "sentences": [{"raw": "..."}, ...]}, ...]}``. Training has one
sample per caption (``restval`` merged into ``train``); evaluation one sample per image with all
its captions as references. The image id is the file name without extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.vqa import read_json
from memvp_lab.errors import DataError


def load_karpathy(path: Path) -> list[dict]:
    """The validated image entries of a Karpathy split file."""
    data = read_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{path} must be an object with an 'images' list (Karpathy's dataset_coco.json)")
    for i, image in enumerate(images):
        ok = (
            isinstance(image, dict)
            and isinstance(image.get("filename"), str)
            and isinstance(image.get("split"), str)
            and isinstance(image.get("sentences"), list)
            and all(isinstance(s, dict) and isinstance(s.get("raw"), str) for s in image["sentences"])
        )
        if not ok:
            raise DataError(
                f"{path} image {i} ({image.get('filename') if isinstance(image, dict) else image!r}): "
                "needs 'filename', 'split' and 'sentences' [{'raw': ...}]"
            )
    return images


class CaptionDataset(Dataset):
    """Args:
    images: Karpathy image entries.
    splits: the ``split`` values included (``["train", "restval"]`` for training).
    features: where visual features are read.
    train: one sample per caption (True) or per image with all references (False).
    source: the file the entries came from (for messages).
    """

    def __init__(
        self, images: list[dict], splits: Sequence[str], features: FeatureSources, train: bool, source: str
    ) -> None:
        self.features, self.train, self.source = features, train, source
        self.entries = []
        for image in images:
            if image["split"] not in splits:
                continue
            refs = [s["raw"].strip() for s in image["sentences"]]
            base = {
                "img_id": Path(image["filename"]).stem,
                "question_id": image.get("cocoid", Path(image["filename"]).stem),
                "references": refs,
            }
            if train:
                self.entries += [{**base, "target": r} for r in refs]
            elif refs:
                self.entries.append({**base, "target": refs[0]})
        if not self.entries:
            raise DataError(f"{source} has no captioned images in split(s) {list(splits)} (empty split)")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        return {
            "index": i,
            "question_id": e["question_id"],
            "img_id": e["img_id"],
            "target": e["target"],
            "weight": 1.0,
            "answers": e["references"],
            "group": "",
            "answer_type": "",
            "visual": np.asarray(self.features.get(e["img_id"])),
            "has_image": 1.0,
        }
