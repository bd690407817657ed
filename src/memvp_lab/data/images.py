"""Images read from disk as tensors (feature extraction and on-the-fly vision encoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(folder: Path, pattern: str, id_from: str) -> dict[str, Path]:
    """image id -> path; the id is the file stem or the parent folder's name (ScienceQA)."""
    paths = sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    images: dict[str, Path] = {}
    for p in paths:
        key = p.stem if id_from == "stem" else p.parent.name
        if key in images:
            raise ValueError(f"two images have id {key!r}: {images[key]} and {p}; choose --id-from")
        images[key] = p
    return images


def find_videos(folder: Path, pattern: str) -> dict[str, list[Path]]:
    """video id -> its frame images in name order; ``pattern`` matches the videos' frame folders
    (one folder of frames per video, named by the video id, as TVQA ships its frames)."""
    videos: dict[str, list[Path]] = {}
    for d in sorted(p for p in folder.glob(pattern) if p.is_dir()):
        frames = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            continue
        if d.name in videos:
            raise ValueError(f"two frame folders are named {d.name!r}: {videos[d.name][0].parent} and {d}")
        videos[d.name] = frames
    return videos


def load_image(path: Path | str | Image.Image, size: int) -> torch.Tensor:
    """An RGB image (a file, or a PIL image already open) as a (3, size, size) float tensor in
    [0, 1] (bicubic square resize)."""
    if isinstance(path, Image.Image):
        return _pixels(path, size)
    with Image.open(path) as img:
        return _pixels(img, size)


def _pixels(img: Image.Image, size: int) -> torch.Tensor:
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    array = np.array(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)
