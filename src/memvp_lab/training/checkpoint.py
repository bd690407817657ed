"""Checkpoints that hold only what trains: the trainable tensors plus a small JSON description.

A folder ``<dir>/`` gets ``trainable.safetensors`` (every tensor with ``requires_grad``, by its
name in ``VisionLanguageModel``) and ``trainable.json`` (method name and options, base model,
package version, tensor names). Loading checks both directions: a tensor the model trains but the
file lacks, or one the file has but the model does not train, is an error naming them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from enum import Enum
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import memvp_lab
from memvp_lab.errors import CheckpointMismatch
from memvp_lab.model.vision_language_model import VisionLanguageModel
from memvp_lab.paths import write_text_atomic

TENSORS = "trainable.safetensors"
META = "trainable.json"
# Per-channel mean and std the task standardised the training features with (``standardize_features``):
# features of a new image go through the same transform at prediction time.
FEATURE_STATS = "feature_standardization.safetensors"


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def save_trainable(
    model: VisionLanguageModel,
    directory: str | Path,
    method=None,
    base_model: str | None = None,
    extra: dict | None = None,
) -> Path:
    """Writes the trainable tensors and their description; returns the folder.

    Files are written under temporary names and renamed, so an interrupted save never leaves a
    half-written checkpoint in place of a good one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().to("cpu").contiguous().clone() for name, p in model.trainable_named_parameters()}
    meta = {
        "method": getattr(method, "name", None),
        "options": _plain(method) if method is not None else None,
        "base_model": base_model,
        "memvp_lab_version": memvp_lab.__version__,
        "tensors": sorted(tensors),
        "parameters": int(sum(t.numel() for t in tensors.values())),
        **(extra or {}),
    }
    tmp = directory / f".{TENSORS}.tmp{os.getpid()}"
    save_file(tensors, str(tmp))
    tmp.replace(directory / TENSORS)
    write_text_atomic(directory / META, json.dumps(meta, indent=2, default=str))
    return directory


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a memvp_lab checkpoint folder")
    return json.loads(path.read_text())


def load_trainable(model: VisionLanguageModel, directory: str | Path, method_name: str | None = None) -> dict:
    """Copies the checkpoint's tensors into ``model``; returns its description.

    Raises ``CheckpointMismatch`` for another method, missing or unexpected tensors, or shapes
    that differ.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    if method_name is not None and meta.get("method") not in (None, method_name):
        raise CheckpointMismatch(f"{directory} holds method={meta['method']}, the model is method={method_name}")
    tensors = load_file(str(directory / TENSORS))
    params = dict(model.trainable_named_parameters())
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise CheckpointMismatch(
            f"{directory} does not match the model: missing {len(missing)} tensors {missing[:5]}, "
            f"unexpected {len(unexpected)} tensors {unexpected[:5]}"
        )
    for name, tensor in tensors.items():  # every check before the first copy: all or nothing
        if params[name].shape != tensor.shape:
            raise CheckpointMismatch(
                f"{name}: checkpoint shape {tuple(tensor.shape)}, model shape {tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
    return meta


def model_fingerprint(backbone, vision) -> dict:
    """What a checkpoint's tensors were trained with, to refuse loading them into anything else:
    the backbone's name, weights and shape, and the vision encoder's name and feature shape."""
    config = backbone.model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    return {
        "backbone": {
            "name": backbone.name,
            "source": backbone.source,
            "model_type": config.model_type,
            "hidden_size": backbone.hidden_size,
            "num_layers": layers,
            "vocab_size": config.vocab_size,
        },
        "vision": {
            "name": str(vision.name),
            "feature_dim": int(vision.feature_dim),
            "num_tokens": int(vision.num_tokens),
            "image_size": int(vision.image_size),
        },
    }


def check_fingerprint(meta: dict, current: dict, directory: str | Path) -> None:
    """Raises ``CheckpointMismatch`` naming each backbone / vision property that differs from the
    one the checkpoint recorded (checkpoints written before fingerprints existed pass)."""
    differences = []
    for part in ("backbone", "vision"):
        recorded = meta.get(part) or {}
        for key, value in recorded.items():
            if key == "source":  # the same weights may be read from another place
                continue
            if key in current[part] and current[part][key] != value:
                differences.append(f"{part}.{key}: trained with {value!r}, given {current[part][key]!r}")
    if differences:
        raise CheckpointMismatch(f"{directory} does not fit this model: " + "; ".join(differences))


def save_feature_stats(directory: str | Path, mean, std) -> Path:
    path = Path(directory) / FEATURE_STATS
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({"mean": torch.as_tensor(mean).float(), "std": torch.as_tensor(std).float()}, str(tmp))
    tmp.replace(path)
    return path


def load_feature_stats(directory: str | Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    path = Path(directory) / FEATURE_STATS
    if not path.is_file():
        return None
    tensors = load_file(str(path))
    return tensors["mean"], tensors["std"]


def save_run_adapter(directory: str | Path, model, method, backbone, vision, feature_scale=None) -> Path:
    """A finished run's adapter: the trainable tensors with their description and fingerprint,
    plus the feature standardisation (``(mean, std)``) when the task applied one."""
    save_trainable(model, directory, method, base_model=backbone.source, extra=model_fingerprint(backbone, vision))
    if feature_scale is not None:
        save_feature_stats(directory, *feature_scale)
    return Path(directory)
