"""ScienceQA as a data module: pre-extracted features keyed by qid, or images for an on-the-fly
vision encoder (``vision.adapters`` set: MemVP / LLaVA-LoRA on LLaMA train ViT adapters)."""

from __future__ import annotations

from memvp_lab.data.datamodule import VLDataModule
from memvp_lab.data.feature_files import FeatureSources
from memvp_lab.data.scienceqa import ScienceQADataset, load_problems
from memvp_lab.data.vqa import read_json
from memvp_lab.errors import DataError


class ScienceQADataModule(VLDataModule):
    """Args:
    problems_file, splits_file: ``problems.json`` and ``pid_splits.json`` under ``root``.
    train_split, val_split, test_split: keys of ``pid_splits.json``.
    image_dir: folder of ``<split>/<qid>/image.png`` (used when ``features`` is null).
    image_size: images are resized to this square size.
    captions_file: ``captions.json`` whose captions join the context, or null.
    encoder_adapters: the vision config's ``adapters``; when set, images are loaded instead of
        features (the encoder runs on the fly and trains them).
    **kwargs: ``VLDataModule`` arguments (``features``: null loads images).
    """

    def __init__(
        self,
        problems_file: str,
        splits_file: str,
        train_split: str,
        val_split: str,
        test_split: str,
        image_dir: str,
        image_size: int,
        captions_file: str | None = None,
        encoder_adapters=None,
        **kwargs,
    ) -> None:
        if encoder_adapters:
            kwargs["features"] = None  # the vision encoder runs on the fly on the images
        super().__init__(**kwargs)
        self.problems_file, self.splits_file = problems_file, splits_file
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.image_dir, self.image_size, self.captions_file = image_dir, image_size, captions_file

    def build_datasets(self, store: FeatureSources | None):
        problems = load_problems(self.root / self.problems_file)
        splits = read_json(self.root / self.splits_file)
        captions = None
        if self.captions_file:
            captions = read_json(self.root / self.captions_file).get("captions", {})
        out = {}
        for stage, name in self.split_names.items():
            if not isinstance(splits, dict) or name not in splits:
                raise DataError(f"{self.root / self.splits_file} has no split {name!r}")
            out[stage] = ScienceQADataset(
                problems,
                [str(q) for q in splits[name]],
                store,
                self.root / self.image_dir,
                self.image_size,
                (self.visual.num_tokens, self.visual.feature_dim),
                captions,
                name,
                self.splits_file,
            )
        return out
