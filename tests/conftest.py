"""Fixtures shared by the test modules (their builders are in ``helpers.py``) and the test
environment: W&B offline and silent, no model hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs 2 workers on 2 cores: one thread each,
    os.environ["OMP_NUM_THREADS"] = "1"  # also in the commands the tests start
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A session-wide data folder: small shapes datasets are generated once per session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield
