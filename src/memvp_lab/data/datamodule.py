"""The Lightning data module every task builds on: features, checks, loaders.

A task's data module says how to read its files into ``train`` / ``val`` / ``test`` datasets
(each with an ``entries`` list whose items name their ``img_id``); this base opens the visual
features, checks before training that every image has them (or skips and counts the ones that
do not, when asked), optionally preloads them and makes the loaders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.data.collate import VLCollator
from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.sampling import EpochKeyedDataset, ResumableSampler
from memvp_lab.errors import FeatureError
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def _parts(dataset: Dataset) -> list[Dataset]:
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


class VLDataModule(L.LightningDataModule):
    """Args:
    root: dataset root; every file argument is relative to it.
    features: a consolidated ``.h5`` file or a directory of per-image ``<img_id>.h5`` files,
        or a list of them searched in order; None when the task loads images instead.
    prompt: the task prompt template over the sample's fields (e.g. ``"{question}"``).
    batch_size, eval_batch_size: per-process batch sizes.
    num_workers: DataLoader workers.
    preload_features: read every needed feature into memory at set-up (small datasets).
    max_prompt_tokens, max_target_tokens: tokenisation limits.
    skip_missing_images: drop (and count) samples whose image has no features instead of
        stopping with an error that names the first such image.
    standardize_features: scale every feature channel to zero mean and unit variance with
        statistics of the training images (the same transform for every split).
    shuffle_seed: seeds the training order and a sample's random choices (with the epoch).
    backbone, visual: set by the training entry point.
    """

    def __init__(
        self,
        root: str,
        features: str | Sequence[str] | None,
        prompt: str,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        preload_features: bool,
        max_prompt_tokens: int,
        max_target_tokens: int,
        backbone: Backbone,
        visual: VisualSpec,
        skip_missing_images: bool = False,
        standardize_features: bool = False,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.features_paths = [features] if isinstance(features, str) else list(features or [])
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.preload_features = preload_features
        self.skip_missing_images = skip_missing_images
        self.standardize_features = standardize_features
        self.shuffle_seed = shuffle_seed
        self._resume: tuple[int, int] | None = None
        self.visual = visual
        self.collate = VLCollator(backbone, prompt, max_prompt_tokens, max_target_tokens)
        self.datasets: dict[str, Dataset] = {}
        self._store: FeatureSources | None = None

    @property
    def feature_sources(self) -> FeatureSources | None:
        """The opened feature files (after ``setup``); None when the task reads images instead."""
        return self._store

    # ----------------------------------------------------------------- per task
    def build_datasets(self, store: FeatureSources) -> dict[str, Dataset]:
        """``{"train": ..., "val": ..., "test": ...}`` read from the task's files."""
        raise NotImplementedError

    # ------------------------------------------------------------------- shared
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        store = None
        if self.features_paths:  # None: the task reads images instead (vision encoder run on the fly)
            store = self._store = FeatureSources(
                [self.root / p for p in self.features_paths], self.visual.num_tokens, self.visual.feature_dim
            )
        datasets = self.build_datasets(store)
        if store is not None:
            self._check_images(datasets, store)
        if self.preload_features and store is not None:
            ids = [
                e["img_id"]
                for d in datasets.values()
                for part in _parts(d)
                for e in part.entries
                if e.get("img_id") is not None
            ]
            store.preload(ids)
            log.info("preloaded features of %d images", len(set(ids)))
        if self.standardize_features and store is not None:
            train_ids = sorted(
                {e["img_id"] for part in _parts(datasets["train"]) for e in part.entries if e.get("img_id") is not None}
            )
            store.standardize(train_ids)
        self.datasets = datasets
        log.info("data: %s", {k: len(v) for k, v in datasets.items()})

    def _check_images(self, datasets: dict[str, Dataset], store: FeatureSources) -> None:
        """Every sample's image has features, checked once before any training step."""
        for split, dataset in datasets.items():
            for part in _parts(dataset):
                missing = [e for e in part.entries if e.get("img_id") is not None and e["img_id"] not in store]
                if not missing:
                    continue
                if not self.skip_missing_images:
                    first = missing[0]["img_id"]
                    where = ", ".join(str(s.path) for s in store.stores)
                    raise FeatureError(
                        f"{len(missing)} {split} samples of {getattr(part, 'source', split)} have no visual features, "
                        f"e.g. image id {first!r} (looked in {where}); extract them with python -m memvp_lab.features "
                        "or set task.data.skip_missing_images=true to drop such samples"
                    )
                gone = {id(e) for e in missing}
                part.entries = [e for e in part.entries if id(e) not in gone]
                log.warning(
                    "%s: skipped %d samples whose image has no features (e.g. %r)",
                    split,
                    len(missing),
                    missing[0]["img_id"],
                )
                if not part.entries:
                    raise FeatureError(f"no {split} sample of {getattr(part, 'source', split)} has features")

    def teardown(self, stage: str | None = None) -> None:
        if self._store is not None:
            self._store.close()

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next training loader starts ``epoch`` after its first ``batches`` batches (per process)."""
        self._resume = (epoch, batches)

    def _loader(self, dataset: Dataset, batch_size: int, sampler=None) -> DataLoader:
        # A loader-owned generator: creating an iterator never draws from the global torch RNG, so
        # dropout masks do not depend on when loaders were (re)created, e.g. after a resume.
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.shuffle_seed),
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = ResumableSampler(
            self.datasets["train"],
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            seed=self.shuffle_seed,
        )
        if self._resume is not None:
            epoch, batches = self._resume
            sampler.resume(epoch, min(batches * self.batch_size, sampler.num_samples))
            self._resume = None
        return self._loader(EpochKeyedDataset(self.datasets["train"], self.shuffle_seed), self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], self.eval_batch_size)
