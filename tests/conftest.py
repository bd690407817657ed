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


# The test files that take longest, longest first (their time in
# `make test PYTEST_ADDOPTS=--durations=0`, summed per file). pytest-xdist gives a worker one file
# at a time (Makefile: --dist loadfile --no-loadscope-reorder keeps this order); started first,
# they run beside each other and the many short files fill in at the end, instead of one worker
# running a long file alone while the other has finished.
LONGEST_FIRST = (
    "test_readme_commands.py",
    "test_configs.py",
    "test_reproducibility.py",
    "test_train_entry.py",
    "test_mini_reproductions.py",
    "test_predict.py",
    "test_experiments.py",
    "test_ddp.py",
    "test_bench.py",
    "test_hf_families.py",
    "test_methods.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
