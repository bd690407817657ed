"""The global random generators' states, as plain tensors and tuples a checkpoint can hold.

Checkpoints load with ``torch.load(weights_only=True)``: the NumPy state is stored as a tensor and
lists, not as a pickled NumPy object.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_states() -> dict:
    """The states of Python's ``random``, NumPy's global generator, torch's CPU and CUDA generators."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
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
