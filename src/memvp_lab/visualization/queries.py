"""One-sample batches to visualise: samples of the run's task, or an image file with questions.

A sample's features come from the task's data module exactly as in training and testing. An image
file goes through the run's vision encoder (``vision.encoder``), is stored as float16 as feature
extraction stores it, and is transformed by the data module's feature files (the same
standardisation statistics); tasks that run the encoder inside the model get the pixels instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig
from torch.utils.data import ConcatDataset

from memvp_lab.batch import VLBatch
from memvp_lab.data.collate import unlabelled_sample
from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.data.extraction import as_stored
from memvp_lab.data.images import IMAGE_SUFFIXES, load_image
from memvp_lab.errors import ConfigError
from memvp_lab.training.factory import instantiate_node


@dataclass
class Query:
    """One question about one image, ready for the model.

    Attributes:
        name: file name stem of its plot.
        sample: the sample dict the collator got (``question``, ``visual``, ...).
        batch: the collated one-sample batch, on the model's device.
        image: (H, W, 3) in [0, 1], square-resized as the vision encoder sees it; None if not found.
        reference: the dataset's answer, for a task sample.
    """

    name: str
    sample: dict
    batch: VLBatch
    image: np.ndarray | None
    reference: str | None = None

    @property
    def question(self) -> str:
        return self.sample["question"]

    def prompt_row(self) -> list[int]:
        """The collated prompt ids without padding."""
        return self.batch.prompt_ids[0][self.batch.prompt_mask[0].bool()].tolist()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "question"


def _hwc(pixels) -> np.ndarray:
    return torch.as_tensor(pixels).permute(1, 2, 0).clamp(0, 1).numpy()


def _batch(datamodule: VLDataModule, sample: dict, device: str) -> VLBatch:
    from memvp_lab.visualization.tokens import prompt_text

    prompt_text(datamodule.collate, sample)  # a missing prompt field fails with a clear message
    return move_data_to_device(datamodule.collate([sample]), torch.device(device))


def _split_parts(datamodule: VLDataModule, split: str):
    if split not in datamodule.datasets:
        raise ConfigError(f"split={split}: the task has splits {sorted(datamodule.datasets)}")
    dataset = datamodule.datasets[split]
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


def find_image(img_id: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{img_id}{suffix}").exists():
                return folder / f"{img_id}{suffix}"
    return None


def task_queries(
    datamodule: VLDataModule,
    *,
    split: str,
    question_ids: Sequence = (),
    question_types: Sequence[str] = (),
    per_type: int = 1,
    question: str | None = None,
    image_dir: str | None = None,
    image_size: int,
    device: str = "cpu",
) -> list[Query]:
    """Samples of the run's task: by question id, and/or the first ``per_type`` of each question
    type (entry field ``question_type``), in split order. ``question`` replaces their question."""
    parts = _split_parts(datamodule, split)
    chosen: list[tuple[object, int]] = []
    wanted = [str(q) for q in question_ids]
    found = {}
    for part in parts:
        for i, entry in enumerate(part.entries):
            if str(entry.get("question_id")) in wanted:
                found[str(entry.get("question_id"))] = (part, i)
    missing = [q for q in wanted if q not in found]
    if missing:
        raise ConfigError(f"question_id={missing[0]} is not in the task's {split} split (split=... picks another)")
    chosen += [found[q] for q in wanted]
    for qtype in question_types:
        hits = [(part, i) for part in parts for i, e in enumerate(part.entries) if e.get("question_type") == qtype]
        if not hits:
            types = sorted({str(e.get("question_type")) for part in parts for e in part.entries})
            raise ConfigError(f"question_types: no {split} question of type {qtype!r} (the split has {types})")
        chosen += hits[:per_type]
    folders = [Path(image_dir)] if image_dir else [datamodule.root / "images", datamodule.root]
    queries = []
    for part, i in dict.fromkeys(chosen):  # once each, in order
        sample = dict(part[i])
        if question:
            sample["question"] = str(question)
        image = None
        if "pixels" in sample:
            image = _hwc(sample["pixels"])
        elif sample.get("img_id") is not None:
            path = find_image(str(sample["img_id"]), folders)
            image = None if path is None else _hwc(load_image(path, image_size))
        name = f"q{sample['question_id']}" + (f"_{_slug(question)}" if question else "")
        queries.append(
            Query(name, sample, _batch(datamodule, sample, device), image, reference=sample.get("target") or None)
        )
    return queries


def image_features(vision: DictConfig, datamodule: VLDataModule, pixels: torch.Tensor) -> np.ndarray:
    """(tokens, dim) features of one (3, H, W) image, as the task's feature files give them."""
    encoder = instantiate_node(vision.encoder).eval()
    with torch.inference_mode():
        feats = as_stored(encoder(pixels[None]))[0]
    store = datamodule.feature_sources
    return store.standardized(feats) if store is not None else feats


def image_queries(
    vision: DictConfig, datamodule: VLDataModule, image: str | Path, questions: Sequence[str], device: str = "cpu"
) -> list[Query]:
    """Questions about an image file."""
    path = Path(image)
    if not path.is_file():
        raise ConfigError(f"image={image}: no such file")
    if not questions:
        raise ConfigError(f'image={image} needs a question: question="..." (or a list of them)')
    pixels = load_image(path, int(vision.image_size))
    base = unlabelled_sample(None, img_id=path.stem)
    if datamodule.feature_sources is None:  # the model runs the vision encoder itself
        base.update(pixels=pixels, visual=np.zeros((0, 0), dtype=np.float32))
    else:
        base["visual"] = image_features(vision, datamodule, pixels)
    queries = []
    for k, question in enumerate(questions):
        sample = {**base, "question_id": f"{path.stem}_{k}", "question": str(question)}
        queries.append(
            Query(f"{_slug(path.stem)}_{_slug(question)}", sample, _batch(datamodule, sample, device), _hwc(pixels))
        )
    return queries
