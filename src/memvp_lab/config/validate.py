"""Start-up checks of combinations that types alone cannot catch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from memvp_lab.data.feature_files import check_feature_shapes
from memvp_lab.errors import ConfigError
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.paths import config_dir
from memvp_lab.vision.spec import VisualSpec

FAMILIES = ("decoder_only", "encoder_decoder")


# What to put in a required key a config leaves open (``???``).
REQUIRED_HINTS = {"backbone.model_id": "a hub id such as Qwen/Qwen2.5-0.5B or a local model directory"}


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???``, found without resolving any interpolation."""
    out = []
    for key in node.keys():
        child = node._get_node(key)
        if child._is_missing():
            out.append(f"{prefix}{key}")
        elif isinstance(child, DictConfig) and not child._is_interpolation() and not child._is_none():
            out += _missing_keys(child, f"{prefix}{key}.")
    return out


def check_required(cfg: DictConfig) -> None:
    """Raises ``ConfigError`` naming every required key still unset (``???``) outside ``hydra``."""
    missing = sorted(k for k in _missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        hints = "; ".join(f"set {k}=<{REQUIRED_HINTS.get(k, 'a value')}>" for k in missing)
        raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: {hints}")


def validate(cfg: DictConfig, method: MethodConfig, visual: VisualSpec) -> None:
    """Raises ``ConfigError`` naming the key to change, before any model is built."""
    family = cfg.backbone.get("family")
    if family not in FAMILIES:
        raise ConfigError(f"backbone.family={family!r}: expected one of {FAMILIES}")
    if visual.num_tokens <= 0 or visual.feature_dim <= 0:
        raise ConfigError("vision.num_tokens and vision.feature_dim must be positive")
    if cfg.vision.get("adapters") and not cfg.task.get("images_on_the_fly", False):
        raise ConfigError(
            f"vision={cfg.vision.name} trains adapters inside the vision encoder, which needs images at run "
            f"time, but task={cfg.task.name} serves pre-extracted features; set vision.adapters=null "
            "(frozen encoder) or use a task that loads images"
        )
    multipliers = method.lr_multipliers
    if multipliers is not None:
        if not isinstance(multipliers, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in multipliers.values()
        ):
            raise ConfigError(
                f"method.lr_multipliers={multipliers!r}: expected {{name pattern: positive number}}, "
                "e.g. method.lr_multipliers={prompting.projector.*:10}"
            )
    method.validate(visual, family == "encoder_decoder")
    trainer = cfg.trainer
    if trainer.get("max_steps", -1) in (None, 0) or (
        trainer.get("max_steps", -1) < 0 and trainer.get("max_epochs") is None
    ):
        raise ConfigError("set trainer.max_steps (>0) or trainer.max_epochs")
    gen = cfg.task.generation
    if gen.max_new_tokens <= 0:
        raise ConfigError(f"task.generation.max_new_tokens={gen.max_new_tokens} must be positive")
    if gen.num_beams <= 0:
        raise ConfigError(f"task.generation.num_beams={gen.num_beams} must be positive")


def check_task_features(cfg: DictConfig) -> None:
    """The task's pre-extracted features have the shape the vision settings expect: one file of
    each feature path is opened before any model weights load (``FeatureError`` naming the file,
    both shapes and the setting that fits)."""
    data = cfg.task.data
    if cfg.task.get("images_on_the_fly") or not data.get("features"):
        return
    known = {}
    for path in sorted((config_dir() / "vision").glob("*.yaml")):
        node = OmegaConf.load(path)
        if isinstance(node.get("num_tokens"), int) and isinstance(node.get("feature_dim"), int):
            known[path.stem] = (node.num_tokens, node.feature_dim)
    root = Path(data.get("root") or data.get("data_dir") or ".")
    features = OmegaConf.to_container(data.features) if OmegaConf.is_list(data.features) else data.features
    check_feature_shapes(root, features, cfg.vision.num_tokens, cfg.vision.feature_dim, cfg.vision.name, known)
