"""Where the framework's config files are, and how its result files are written."""

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


def experiments_dir() -> Path:
    """The ``experiments/`` directory (paper reproductions as sweeps, and their paper numbers):
    ``$MEMVP_LAB_EXPERIMENTS`` or the one beside ``conf/``. Its YAML files are the ``experiment``
    config group (``memvp_lab.config.schemas.register_configs``)."""
    env = os.environ.get("MEMVP_LAB_EXPERIMENTS")
    return Path(env) if env else config_dir().parent / "experiments"


def write_text_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` beside ``path`` and renames it into place: a reader (or a run killed
    mid-write) never sees a half-written file, and a previous complete file stays until then."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return path
