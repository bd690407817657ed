"""The embedded shapes VQA task: generated on first use, then read by the VQAv2 loader."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate

from memvp_lab.data import shapes_vqa
from memvp_lab.data.features import extract_features
from memvp_lab.data.vqa_datamodule import VQADataModule

log = logging.getLogger(__name__)


class ShapesVQADataModule(VQADataModule):
    """Generates the shapes dataset and its features under ``data_dir`` if missing.

    Args:
        data_dir: parent folder; the dataset goes to a sub-folder named after its settings.
        seed, num_train_images, num_val_questions, num_test_questions: generator settings.
        vision: the vision config (its ``encoder`` node builds the feature extractor).
        extract_batch_size: images per extraction batch.
        **kwargs: ``VQADataModule`` arguments (``root`` is derived).
    """

    def __init__(self, data_dir: str, seed: int, num_train_images: int, num_val_questions: int,
                 num_test_questions: int, vision, extract_batch_size: int, **kwargs) -> None:
        self.spec = shapes_vqa.ShapesVQASpec(seed, num_train_images, num_val_questions, num_test_questions,
                                             image_size=int(vision.image_size))
        self.vision_cfg = vision
        self.extract_batch_size = extract_batch_size
        self._prepared = False
        super().__init__(root=str(Path(data_dir) / self.spec.dirname()), **kwargs)

    def prepare_data(self) -> None:
        if self._prepared:  # Lightning calls this before fit and again before test
            return
        root = shapes_vqa.generate(self.root.parent, self.spec)
        images = {p.stem: p for p in sorted((root / "images").glob("*.jpg"))}
        extract_features(lambda: instantiate(self.vision_cfg.encoder), images, root / self.features_paths[0],
                         batch_size=self.extract_batch_size)
        self._prepared = True
