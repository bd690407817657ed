"""Lightning data module for VQAv2-format data (VQAv2 itself and the shapes task)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader

from memvp_lab.backbones.base import Backbone
from memvp_lab.data.collate import VLCollator
from memvp_lab.data.features import FeatureStore
from memvp_lab.data.vqa import VQADataset, load_annotations, load_questions
from memvp_lab.methods.base import VisualSpec

log = logging.getLogger(__name__)


class VQADataModule(L.LightningDataModule):
    """Karpathy-split question files + official annotations + HDF5 features under ``root``.

    Args:
        root: dataset root; the file arguments are relative to it.
        train_files, val_file, test_file: question files.
        annotation_file: official-format human answers for the val and test questions.
        features: consolidated ``.h5`` file or directory of per-image ``.h5`` files.
        prompt: prompt template over ``{question}``.
        batch_size, eval_batch_size: per-process batch sizes.
        num_workers: DataLoader workers.
        preload_features: read all features into memory at set-up (small datasets).
        max_prompt_tokens, max_target_tokens: tokenisation limits.
        backbone, visual: set by the training entry point.
    """

    def __init__(self, root: str, train_files: Sequence[str], val_file: str, test_file: str, annotation_file: str,
                 features: str, prompt: str, batch_size: int, eval_batch_size: int, num_workers: int,
                 preload_features: bool, max_prompt_tokens: int, max_target_tokens: int,
                 backbone: Backbone, visual: VisualSpec) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_files, self.val_file, self.test_file = list(train_files), val_file, test_file
        self.annotation_file = annotation_file
        self.features_path = features
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.preload_features = preload_features
        self.visual = visual
        self.collate = VLCollator(backbone, prompt, max_prompt_tokens, max_target_tokens)
        self.datasets: dict[str, object] = {}
        self._store_in_use: FeatureStore | None = None

    def _store(self) -> FeatureStore:
        return FeatureStore(self.root / self.features_path, self.visual.num_tokens, self.visual.feature_dim)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        store = self._store_in_use = self._store()
        refs = load_annotations(self.root / self.annotation_file)
        train = [VQADataset(load_questions(self.root / f), store, None, True, f) for f in self.train_files]
        self.datasets["train"] = train[0] if len(train) == 1 else ConcatDataset(train)
        self.datasets["val"] = VQADataset(load_questions(self.root / self.val_file), store, refs, False, self.val_file)
        self.datasets["test"] = VQADataset(load_questions(self.root / self.test_file), store, refs, False, self.test_file)
        if self.preload_features:
            ids = [e["img_id"] for d in (*train, self.datasets["val"], self.datasets["test"]) for e in d.entries]
            store.preload(ids)
            log.info("preloaded features of %d images", len(set(ids)))
        log.info("data: %s", {k: len(v) for k, v in self.datasets.items()})

    def teardown(self, stage: str | None = None) -> None:
        if self._store_in_use is not None:
            self._store_in_use.close()

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)
