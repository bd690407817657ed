"""TVQA / How2QA as a data module."""

from __future__ import annotations

from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.video_qa import VideoQADataset, load_jsonl


class VideoQADataModule(VLDataModule):
    """Args:
    train_file, val_file, test_file: JSON Lines question files under ``root`` (the paper
        reports validation: the test sets are not public, so ``test_file`` is the val file).
    **kwargs: ``VLDataModule`` arguments.
    """

    def __init__(self, train_file: str, val_file: str, test_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.files = {"train": train_file, "val": val_file, "test": test_file}

    def build_datasets(self, store: FeatureSources):
        return {split: VideoQADataset(load_jsonl(self.root / f), store, f) for split, f in self.files.items()}
