"""Images read from disk as tensors (feature extraction and on-the-fly vision encoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


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
