"""Where the framework's config files are."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """The ``conf/`` directory: ``$MEMVP_LAB_CONF`` or the repository's ``conf/``."""
    env = os.environ.get("MEMVP_LAB_CONF")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "train.yaml").exists():
        raise FileNotFoundError(
            f"memvp_lab's config directory was not found at {path}. Install the package from a checkout "
            "(`pip install -e .`) or point MEMVP_LAB_CONF at a copy of the repository's conf/ directory."
        )
    return path
