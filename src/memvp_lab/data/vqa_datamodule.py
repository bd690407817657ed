"""VQAv2-format question files (VQAv2, GQA, the shapes task) as a data module."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import ConcatDataset

from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.vqa import VQADataset, load_annotations, load_questions


class VQADataModule(VLDataModule):
    """Question files ``{img_id, question_id, sent, label, ...}`` plus, for VQAv2, the official
    annotations that hold the ten human answers per question.

    Args:
        train_files: question files trained on (GQA: ``train.json`` and ``valid.json``).
        val_file, test_file: evaluated question files.
        annotation_file: official-format annotation file(s) for the evaluated questions; null:
            the answers of ``label`` are the accepted ones (GQA).
        **kwargs: ``VLDataModule`` arguments.
    """

    def __init__(
        self,
        train_files: Sequence[str],
        val_file: str,
        test_file: str,
        annotation_file: str | Sequence[str] | None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.train_files, self.val_file, self.test_file = list(train_files), val_file, test_file
        self.annotation_files = [annotation_file] if isinstance(annotation_file, str) else list(annotation_file or [])

    def build_datasets(self, store: FeatureSources):
        refs = None
        if self.annotation_files:
            refs = {}
            for f in self.annotation_files:
                refs.update(load_annotations(self.root / f))
        train = [VQADataset(load_questions(self.root / f), store, None, True, f) for f in self.train_files]
        return {
            "train": train[0] if len(train) == 1 else ConcatDataset(train),
            "val": VQADataset(load_questions(self.root / self.val_file), store, refs, False, self.val_file),
            "test": VQADataset(load_questions(self.root / self.test_file), store, refs, False, self.test_file),
        }
