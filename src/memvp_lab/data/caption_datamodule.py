"""COCO Captions (Karpathy split) as a data module."""

from __future__ import annotations

from collections.abc import Sequence

from memvp_lab.data.captions import CaptionDataset, load_karpathy
from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.data.feature_files import FeatureSources


class CaptionDataModule(VLDataModule):
    """Args:
    karpathy_file: ``dataset_coco.json``, relative to ``root``.
    train_splits: Karpathy splits trained on (``train`` and ``restval``).
    val_split, test_split: evaluated splits.
    **kwargs: ``VLDataModule`` arguments.
    """

    def __init__(
        self, karpathy_file: str, train_splits: Sequence[str], val_split: str, test_split: str, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.karpathy_file = karpathy_file
        self.train_splits, self.val_split, self.test_split = list(train_splits), val_split, test_split

    def build_datasets(self, store: FeatureSources):
        images = load_karpathy(self.root / self.karpathy_file)
        f = self.karpathy_file
        return {
            "train": CaptionDataset(images, self.train_splits, store, True, f),
            "val": CaptionDataset(images, [self.val_split], store, False, f),
            "test": CaptionDataset(images, [self.test_split], store, False, f),
        }
