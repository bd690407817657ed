"""Builds the model a composed config describes (shared by training, parameter counts and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.config.validate import check_required, validate
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


# Backbone keys that describe its family to the methods (their YAML reads them by interpolation,
# e.g. ${backbone.added_weights.linear_init}); not arguments of the function that builds it.
FAMILY_PROPERTIES = ("added_weights",)


def build_backbone(node: DictConfig, device: str | None = None) -> Backbone:
    """The backbone a ``backbone`` config node describes (``device="meta"``: shapes only)."""
    node = node.copy()
    with open_dict(node):
        for key in FAMILY_PROPERTIES:
            node.pop(key, None)
    return instantiate_node(node, **({"device": device} if device else {}))


@dataclass
class Built:
    method: MethodConfig
    visual: VisualSpec
    backbone: Backbone
    model: VisionLanguageModel


def method_and_visual(cfg: DictConfig) -> tuple[MethodConfig, VisualSpec]:
    """The typed method config and the visual input it gets, validated against ``cfg``."""
    check_required(cfg)
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
    backbone = build_backbone(cfg.backbone, device)
    tower = None
    if cfg.vision.get("adapters"):
        tower = instantiate_node(cfg.vision.encoder, **({"device": device} if device else {}))
    model = method.build(backbone, visual, vision_tower=tower, validate=False)  # validated above
    # A multiplier pattern that matches nothing fails here, before any data is prepared.
    lr_multipliers([name for name, _ in model.trainable_named_parameters()], method)
    return Built(method, visual, backbone, model)
