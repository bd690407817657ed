"""Pre-extracted visual features in HDF5: reading, validating and extracting them.

Two layouts are read, both holding a group per image id with a dataset ``features`` of shape
(tokens, dim):

* per-image files, as the community ships CLIP features:
  ``<dir>/<img_id>.h5`` -> ``/<img_id>/features``;
* one consolidated file: ``<file>.h5`` -> ``/<img_id>/features`` for every image.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from filelock import FileLock
from PIL import Image
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class FeatureError(RuntimeError):
    """A visual feature is missing or malformed; the message names the image id and file."""


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
        if self._scale is not None:
            return ((array.astype(np.float32) - self._scale[0]) / self._scale[1]).astype(np.float32)
        return array

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


def load_image(path: Path, size: int) -> torch.Tensor:
    """An RGB image as a (3, size, size) float tensor in [0, 1] (bicubic square resize)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        array = np.array(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _traced(encoder: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """A frozen TorchScript graph of the encoder: BatchNorm folded into convolutions.

    On a 2-core CPU this extracts EfficientNet-Lite0 features about 3x faster than eager mode;
    outputs match eager mode to ~1e-4. Encoders that do not trace run eagerly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.freeze(torch.jit.trace(encoder.eval(), example))
        except Exception as err:  # noqa: BLE001 - any tracing failure falls back to eager mode
            log.info("encoder does not trace (%s); extracting in eager mode", type(err).__name__)
            return encoder.eval()


def extract_features(
    encoder: torch.nn.Module | Callable[[], torch.nn.Module],
    image_paths: dict[str, Path],
    out_file: Path,
    batch_size: int = 32,
    trace: bool = True,
) -> Path:
    """Extracts grid features of every image into one consolidated HDF5 file, resumably.

    Images whose id is already in ``out_file`` are skipped, so an interrupted run continues
    where it stopped (and a complete file costs one look-up). Features are stored as float16
    ``/<img_id>/features`` (tokens, dim). Processes sharing ``out_file`` take turns.

    Args:
        encoder: a ``GridEncoder`` (images are resized to its ``image_size``), or a function
            building one (called only if an image is missing).
        out_file: a ``.h5`` file, or a directory to write one ``<img_id>.h5`` per image into (the
            layout CLIP features are shipped in).
    """
    if out_file.suffix not in (".h5", ".hdf5"):
        return _extract_per_image(encoder, image_paths, out_file, batch_size, trace)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if out_file.exists():  # a complete file is only read, never reopened for writing
        with h5py.File(out_file, "r") as f:
            if all(f"{i}/features" in f for i in image_paths):
                return out_file
    with FileLock(str(out_file) + ".lock"), h5py.File(out_file, "a") as f:
        todo = [i for i in sorted(image_paths) if f"{i}/features" not in f]
        if not todo:
            return out_file
        log.info("extracting features of %d images into %s", len(todo), out_file)
        for ids, tokens in _encoded_batches(encoder, image_paths, todo, batch_size, trace):
            for img_id, feats in zip(ids, tokens):
                f.create_dataset(f"{img_id}/features", data=feats)
            f.flush()
    return out_file


def _encoded_batches(encoder, image_paths: dict[str, Path], todo: list[str], batch_size: int, trace: bool):
    """Yields (image ids, float16 features) batch by batch, with a progress bar."""
    if not isinstance(encoder, torch.nn.Module):
        encoder = encoder()
    # NHWC: CPU convolutions (depthwise ones above all) run faster in it; EfficientNet-Lite0
    # extracts 1.6x faster, its features equal NCHW ones to 3e-5.
    encoder = encoder.to(memory_format=torch.channels_last)
    run = None
    for start in tqdm(range(0, len(todo), batch_size), desc="features", unit="batch"):
        ids = todo[start : start + batch_size]
        images = torch.stack([load_image(image_paths[i], encoder.image_size) for i in ids])
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if run is None:
                run = _traced(encoder, images) if trace else encoder
            yield ids, run(images).float().numpy().astype(np.float16)


def _extract_per_image(encoder, image_paths: dict[str, Path], out_dir: Path, batch_size: int, trace: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in sorted(image_paths) if not (out_dir / f"{i}.h5").exists()]
    if not todo:
        return out_dir
    log.info("extracting features of %d images into %s/<img_id>.h5", len(todo), out_dir)
    for ids, tokens in _encoded_batches(encoder, image_paths, todo, batch_size, trace):
        for img_id, feats in zip(ids, tokens):
            tmp = out_dir / f".{img_id}.h5.tmp"
            with h5py.File(tmp, "w") as f:  # written aside, then renamed: no half-written file remains
                f.create_dataset(f"{img_id}/features", data=feats)
            tmp.replace(out_dir / f"{img_id}.h5")
    return out_dir


def consolidate(per_image_dir: Path, out_file: Path, img_ids: Sequence[str] | None = None) -> Path:
    """Copies per-image ``<img_id>.h5`` files into one consolidated HDF5 file (resumable)."""
    ids = img_ids if img_ids is not None else sorted(p.stem for p in Path(per_image_dir).glob("*.h5"))
    with h5py.File(out_file, "a") as out:
        for img_id in tqdm(ids, desc="consolidate", unit="img"):
            if f"{img_id}/features" in out:
                continue
            src = Path(per_image_dir) / f"{img_id}.h5"
            with h5py.File(src, "r") as f:
                if f"{img_id}/features" not in f:
                    raise FeatureError(f"{src} has no dataset '{img_id}/features'")
                out.create_dataset(f"{img_id}/features", data=f[f"{img_id}/features"][()])
    return out_file
