"""The embedded shapes VQA task: generated on first use, then read by the VQAv2 loader."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from memvp_lab.data import shapes_vqa
from memvp_lab.data.extraction import extract_features
from memvp_lab.data.vqa_datamodule import VQADataModule
from memvp_lab.rng import isolated_rng

log = logging.getLogger(__name__)


def extractor_key(vision) -> str:
    """A short hash of the vision encoder's resolved settings (its ``encoder`` node)."""
    settings = (
        OmegaConf.to_container(vision.encoder, resolve=True)
        if OmegaConf.is_config(vision.encoder)
        else dict(vision.encoder)
    )
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def keyed_path(path: str, key: str) -> str:
    """``features/x.h5`` -> ``features/x-<key>.h5``."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{key}{p.suffix}"))


class ShapesVQADataModule(VQADataModule):
    """Generates the shapes dataset and its features under ``data_dir`` if missing.

    Args:
        data_dir: parent folder; the dataset goes to a sub-folder named after its settings.
        seed, num_train_images, num_val_questions, num_test_questions: generator settings.
        vision: the vision config (its ``encoder`` node builds the feature extractor; its
            settings' hash is part of the features file name).
        extract_batch_size: images per extraction batch.
        **kwargs: ``VQADataModule`` arguments (``root`` is derived).
    """

    def __init__(
        self,
        data_dir: str,
        seed: int,
        num_train_images: int,
        num_val_questions: int,
        num_test_questions: int,
        vision,
        extract_batch_size: int,
        **kwargs,
    ) -> None:
        self.spec = shapes_vqa.ShapesVQASpec(
            seed, num_train_images, num_val_questions, num_test_questions, image_size=int(vision.image_size)
        )
        self.vision_cfg = vision
        self.extract_batch_size = extract_batch_size
        self._prepared = False
        super().__init__(root=str(Path(data_dir) / self.spec.dirname()), **kwargs)
        # The cached features are named after everything that produced them: a changed extractor
        # setting (another stage, size or weights) extracts anew instead of reusing stale features.
        self.features_paths = [keyed_path(p, extractor_key(vision)) for p in self.features_paths]

    def prepare_data(self) -> None:
        if self._prepared:  # Lightning calls this before fit and again before test
            return
        # Generation and extraction run only when their output is not cached yet: on their own
        # random streams (the extractor's model draws initial weights before loading its own), so
        # training draws the same numbers whether they ran or not.
        with isolated_rng():
            root = shapes_vqa.generate(self.root.parent, self.spec)
            images = {p.stem: p for p in sorted((root / "images").glob("*.jpg"))}
            extract_features(
                lambda: instantiate(self.vision_cfg.encoder),
                images,
                root / self.features_paths[0],
                batch_size=self.extract_batch_size,
            )
        self._prepared = True
