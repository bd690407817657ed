"""The global random generators' states, as plain tensors and tuples a checkpoint can hold, and a
block that runs on its own seeded streams (``isolated_rng``).

Checkpoints load with ``torch.load(weights_only=True)``: the NumPy state is stored as a tensor and
lists, not as a pickled NumPy object.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def rng_states() -> dict:
    """The states of Python's ``random``, NumPy's global generator, torch's CPU and CUDA generators."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    """Sets every generator ``rng_states`` recorded (states it lacks are left as they are)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


@contextlib.contextmanager
def isolated_rng(seed: int = 0) -> Iterator[None]:
    """Runs a block on its own seeded random streams and leaves the global ones as it found them.

    Preparation steps (converting a backbone, generating a dataset, extracting features) run only
    when their output is not cached yet; inside this block they neither depend on nor advance the
    streams that training draws from, so a first run and a later run of the same command train
    identically.
    """
    saved = rng_states()  # CUDA's too, where CUDA is initialised
    outer_seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CUDA generators too
    try:
        yield
    finally:
        restore_rng_states(saved)
        if "torch_cuda" not in saved and torch.cuda.is_available() and torch.cuda.is_initialized():
            # CUDA was first initialised inside the block: its generators start where a fresh
            # process's would
            torch.cuda.manual_seed_all(outer_seed)
