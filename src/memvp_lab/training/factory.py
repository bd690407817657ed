"""Builds the model a composed config describes (shared by training, parameter counts and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.config.validate import validate
from memvp_lab.errors import ConfigError
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.model.vision_language_model import VisionLanguageModel
from memvp_lab.training.optim import lr_multipliers
from memvp_lab.vision.spec import VisualSpec


def instantiate_node(node: DictConfig, *args, **kwargs):
    """``instantiate`` that lets a ``ConfigError`` from the target through unwrapped."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


@dataclass
class Built:
    method: MethodConfig
    visual: VisualSpec
    backbone: Backbone
    model: VisionLanguageModel


def method_and_visual(cfg: DictConfig) -> tuple[MethodConfig, VisualSpec]:
    """The typed method config and the visual input it gets, validated against ``cfg``."""
    method = instantiate_node(cfg.method, _convert_="all")
    visual = VisualSpec(
        feature_dim=cfg.vision.feature_dim, num_tokens=cfg.vision.num_tokens, grid=bool(cfg.vision.get("grid", True))
    )
    validate(cfg, method, visual)
    return method, visual


def build_model(cfg: DictConfig, device: str | None = None) -> Built:
    """Backbone + method (+ the on-the-fly vision encoder when ``vision.adapters`` is set).

    The config is validated once, first: a bad setting fails before any weights load.

    ``device="meta"`` builds shapes only (parameter counts of 7B/13B models without memory).
    """
    method, visual = method_and_visual(cfg)
    backbone = instantiate_node(cfg.backbone, **({"device": device} if device else {}))
    tower = None
    if cfg.vision.get("adapters"):
        tower = instantiate_node(cfg.vision.encoder, **({"device": device} if device else {}))
    model = method.build(backbone, visual, vision_tower=tower, validate=False)  # validated above
    # A multiplier pattern that matches nothing fails here, before any data is prepared.
    lr_multipliers([name for name, _ in model.trainable_named_parameters()], method)
    return Built(method, visual, backbone, model)
