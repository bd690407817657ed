"""Pre-extracted visual features in HDF5, read and validated by image id.

Two layouts are read, both holding a group per image id with a dataset ``features`` of shape
(tokens, dim):

* per-image files, as the community ships CLIP features:
  ``<dir>/<img_id>.h5`` -> ``/<img_id>/features``;
* one consolidated file: ``<file>.h5`` -> ``/<img_id>/features`` for every image.

Writing them is ``memvp_lab.data.extraction``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from memvp_lab.errors import FeatureError

log = logging.getLogger(__name__)


def standardized(array: np.ndarray, scale: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(array - mean) / std`` per channel in float32, with ``scale = (mean, std)``."""
    return ((array.astype(np.float32) - scale[0]) / scale[1]).astype(np.float32)


class FeatureStore:
    """Reads (tokens, dim) feature arrays by image id from either HDF5 layout.

    Args:
        path: a consolidated ``.h5`` file or a directory of per-image ``<img_id>.h5`` files.
        num_tokens, dim: the expected shape; anything else raises ``FeatureError``.
    """

    def __init__(self, path: str | Path, num_tokens: int, dim: int) -> None:
        self.path = Path(path)
        self.shape = (num_tokens, dim)
        if not self.path.exists():
            raise FeatureError(f"feature path {self.path} does not exist")
        self.consolidated = self.path.is_file()
        self._file: h5py.File | None = None
        self._cache: dict[str, np.ndarray] = {}

    def _handle(self) -> h5py.File:
        """The consolidated file, opened on first use (so each DataLoader worker opens its own)."""
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def _file_for(self, img_id: str) -> Path:
        return self.path if self.consolidated else self.path / f"{img_id}.h5"

    def _read(self, img_id: str) -> np.ndarray:
        file = self._file_for(img_id)
        try:
            if self.consolidated:
                dataset = self._handle().get(f"{img_id}/features")
                if dataset is None:
                    raise FeatureError(f"no features for image id {img_id!r} in {file}")
                array = dataset[()]
            else:
                if not file.exists():
                    raise FeatureError(f"no features for image id {img_id!r}: {file} does not exist")
                with h5py.File(file, "r") as f:
                    dataset = f.get(f"{img_id}/features")
                    if dataset is None:
                        raise FeatureError(f"{file} has no dataset '{img_id}/features'")
                    array = dataset[()]
        except OSError as err:
            raise FeatureError(f"cannot read features of image id {img_id!r} from {file}: {err}") from err
        if array.shape != self.shape:
            raise FeatureError(
                f"features of image id {img_id!r} in {file} have shape {tuple(array.shape)}, "
                f"expected {self.shape} (check vision.num_tokens / vision.feature_dim)"
            )
        return array

    def __contains__(self, img_id: str) -> bool:
        if img_id in self._cache:
            return True
        if self.consolidated:
            return f"{img_id}/features" in self._handle()
        return self._file_for(img_id).exists()

    def preload(self, img_ids: Iterable[str]) -> None:
        """Reads the given images into memory once (fast epochs for small datasets)."""
        for img_id in sorted(set(img_ids)):
            if img_id not in self._cache:
                self._cache[img_id] = self._read(img_id)
        self.close()  # every later read is served from memory

    def get(self, img_id: str) -> np.ndarray:
        cached = self._cache.get(img_id)
        return cached if cached is not None else self._read(img_id)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        # h5py handles cannot be pickled into DataLoader workers; they reopen lazily.
        state = self.__dict__.copy()
        state["_file"] = None
        return state


class FeatureSources:
    """Several ``FeatureStore``s searched in order (GQA: Visual Genome features for training
    images, GQA features for test-dev images)."""

    def __init__(self, paths: Sequence[str | Path], num_tokens: int, dim: int) -> None:
        if not paths:
            raise FeatureError("no feature path given")
        self.stores = [FeatureStore(p, num_tokens, dim) for p in paths]
        self._scale: tuple[np.ndarray, np.ndarray] | None = None  # per-channel (mean, std), see standardize

    def _store_for(self, img_id: str) -> FeatureStore:
        for store in self.stores[:-1]:
            if img_id in store:
                return store
        return self.stores[-1]  # the last one reports the missing id with its own file name

    def __contains__(self, img_id: str) -> bool:
        return any(img_id in s for s in self.stores)

    def get(self, img_id: str) -> np.ndarray:
        return self.standardized(self._store_for(img_id).get(img_id))

    def standardized(self, array: np.ndarray) -> np.ndarray:
        """A (tokens, dim) feature array as ``get`` returns stored ones: standardised per channel
        once ``standardize`` has run, unchanged before (features of an image not in the files)."""
        return standardized(array, self._scale) if self._scale is not None else array

    @property
    def scale(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (mean, std) that ``get`` standardises with, or None."""
        return self._scale

    def standardize(self, img_ids: Sequence[str], max_images: int = 2000) -> None:
        """From now on, ``get`` returns features standardised per channel with the mean and
        standard deviation over (at most ``max_images`` evenly spaced of) ``img_ids``."""
        ids = list(img_ids)[:: max(1, len(img_ids) // max_images)]
        if not ids:
            raise FeatureError("no training images to compute feature statistics from")
        stacked = np.concatenate([self._store_for(i).get(i).astype(np.float32) for i in ids])
        self._scale = (stacked.mean(axis=0), stacked.std(axis=0) + 1e-6)

    def preload(self, img_ids: Iterable[str]) -> None:
        by_store: dict[int, list[str]] = {}
        for img_id in set(img_ids):
            by_store.setdefault(id(self._store_for(img_id)), []).append(img_id)
        for store in self.stores:
            store.preload(by_store.get(id(store), []))

    def close(self) -> None:
        for store in self.stores:
            store.close()


def first_features(path: Path) -> tuple[Path, tuple[int, ...]] | None:
    """The file and shape of the first feature array at a features path (a consolidated ``.h5``
    or a folder of per-image ``.h5`` files); None when the path holds none yet."""
    if path.is_dir():
        file = next((Path(e.path) for e in os.scandir(path) if e.name.endswith(".h5") and e.is_file()), None)
    else:
        file = path if path.is_file() else None
    if file is None:
        return None
    try:
        with h5py.File(file, "r") as f:
            for key in f:
                node = f[key]
                if isinstance(node, h5py.Group) and isinstance(node.get("features"), h5py.Dataset):
                    return file, tuple(node["features"].shape)
    except OSError as err:
        raise FeatureError(f"cannot read {file}: {err}") from None
    return None


def check_feature_shapes(
    root: Path, features: str | Sequence[str] | None, num_tokens: int, dim: int, vision: str, known: dict
) -> None:
    """Opens one feature file under each of a task's feature paths and checks its (tokens, dim)
    against the vision settings, before any model weights load.

    ``known``: ``{vision config name: (tokens, dim)}``, to name the configs that would fit.
    A path that does not exist yet is left to the data module (a generated task writes it later).
    """
    paths = [features] if isinstance(features, str) else list(features or [])
    for relative in paths:
        found = first_features(Path(root) / relative)
        if found is None:
            continue
        file, shape = found
        if shape == (num_tokens, dim):
            continue
        fits = [name for name, value in sorted(known.items()) if tuple(value) == shape]
        fix = f"vision={fits[0]}" if fits else f"vision.num_tokens={shape[0]} vision.feature_dim={shape[-1]}"
        raise FeatureError(
            f"{file} holds features of shape {shape}, but vision={vision} expects ({num_tokens}, {dim}) "
            f"(vision.num_tokens, vision.feature_dim): set {fix}"
        )
