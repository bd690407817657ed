"""VLoRA's typed config: its settings, their checks, and the generator and deltas it builds."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import MISSING
from torch import nn

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.errors import ConfigError
from memvp_lab.methods.contract import MethodConfig
from memvp_lab.methods.memvp.ffn_sites import find_ffn_sites
from memvp_lab.methods.memvp.method import LayerSet, check_layers
from memvp_lab.methods.registry import register_method
from memvp_lab.methods.vlora.deltas import PerceptualDeltas, Target
from memvp_lab.methods.vlora.generator import PerceptualWeightsGenerator
from memvp_lab.nn.sublayers import Kind, find_sublayers_or_fail, select
from memvp_lab.vision.spec import VisualSpec

log = logging.getLogger(__name__)

TYPES = "qkvom"
# The attention's linear maps by type, as the families name them (LLaMA-like, BART, T5).
PROJECTIONS = {"q": ("q_proj", "q"), "k": ("k_proj", "k"), "v": ("v_proj", "v"), "o": ("o_proj", "out_proj", "o")}


def projection(attention: nn.Module, kind: str) -> nn.Linear | None:
    for name in PROJECTIONS[kind]:
        child = getattr(attention, name, None)
        if isinstance(child, nn.Linear):
            return child
    return None


@register_method("vlora")
@dataclass
class VLoRAConfig(MethodConfig):
    """VLoRA (arXiv 2405.20339): per-image low-rank deltas from a perceptual-weights generator."""

    width: int = MISSING  # D, the generator's width
    depth: int = MISSING  # decoder layers per generator
    heads: int = MISSING  # attention heads of the generator's layers
    rank: int = MISSING  # r
    alpha: float = MISSING  # the delta is scaled by alpha / r
    types: str = MISSING  # which maps get deltas: letters of qkvom (m: a bypass around the FFN)
    every: int = MISSING  # s: layers l with (l + 1) % s == 0 get deltas
    separate: bool = MISSING  # one generator per type (official weights_sep) or one for all
    layers: LayerSet = MISSING  # the stack(s) whose layers get deltas

    def validate(self, visual: VisualSpec, is_encoder_decoder: bool | None = None) -> None:
        super().validate(visual, is_encoder_decoder)
        if not self.types or set(self.types) - set(TYPES) or len(set(self.types)) != len(self.types):
            raise ConfigError(f"method.types={self.types!r}: give each of the letters q, k, v, o, m at most once")
        for key in ("width", "depth", "heads", "rank", "every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"method.{key}={getattr(self, key)} must be positive")
        if self.width % self.heads:
            raise ConfigError(f"method.width={self.width} must be divisible by method.heads={self.heads}")
        check_layers(self.layers, is_encoder_decoder)

    def targets(self, backbone: Backbone) -> tuple[list[Target], int]:
        """The linear maps that get deltas and k, the number of inserted layers (per stack)."""
        model = backbone.model
        stacks = {"encoder", "decoder"} if self.layers is LayerSet.all else {self.layers.value}
        attention = select(find_sublayers_or_fail(model, "vlora", backbone.name), stacks, {Kind.self_attn})
        ffns = [site for site in find_ffn_sites(model) if site.stack in stacks]
        targets, counts = [], set()
        for stack in sorted(stacks):
            layers = [s for s in attention if s.stack == stack]
            stack_ffns = [f for f in ffns if f.stack == stack]
            if not layers:
                continue
            if "m" in self.types and len(stack_ffns) != len(layers):
                raise ConfigError(
                    f"method.types={self.types} has m, but the {stack} of backbone={backbone.name} has "
                    f"{len(stack_ffns)} FFNs it can bypass for {len(layers)} layers; drop m from method.types"
                )
            inserted = [i for i in range(len(layers)) if (i + 1) % self.every == 0]
            if not inserted:
                raise ConfigError(
                    f"method.every={self.every} leaves none of the {len(layers)} {stack} layers of "
                    f"backbone={backbone.name} with deltas; set method.every<={len(layers)}"
                )
            counts.add(len(inserted))
            for j, i in enumerate(inserted):
                for kind in self.types:
                    if kind == "m":
                        site = stack_ffns[i]
                        d = backbone.hidden_size
                        targets.append(Target(site.name, "m", j, site.input_module, site.output_module, d))
                        continue
                    linear = projection(layers[i].output_module, kind)
                    if linear is None:
                        raise ConfigError(
                            f"method.types={self.types}: the attention {layers[i].name} of backbone={backbone.name} "
                            f"has no separate {kind} projection (looked for {', '.join(PROJECTIONS[kind])}); "
                            f"drop {kind} from method.types"
                        )
                    name = f"{layers[i].name}.{kind}"
                    targets.append(Target(name, kind, j, linear, linear, linear.out_features))
        if not targets:
            raise ConfigError(f"method.layers={self.layers.value} selects no layer of backbone={backbone.name}")
        if len(counts) != 1:
            raise ConfigError(
                f"method.layers=all gives the encoder and decoder {sorted(counts)} inserted layers; "
                "choose one stack or a method.every that gives both the same count"
            )
        return targets, counts.pop()

    def prompting(self, backbone: Backbone, visual: VisualSpec) -> PerceptualDeltas:
        targets, k = self.targets(backbone)
        inputs = {}
        for t in targets:
            d_in = backbone.hidden_size if t.kind == "m" else t.input_module.in_features
            if inputs.setdefault(t.kind, d_in) != d_in:
                raise ConfigError(f"the {t.kind} maps of backbone={backbone.name} differ in input width")
        if not self.separate and len(set(inputs.values())) > 1:
            raise ConfigError(
                f"method.separate=false shares one generator head across types, but their input widths differ "
                f"({inputs}); set method.separate=true"
            )
        generator = PerceptualWeightsGenerator(
            visual.feature_dim,
            visual.num_tokens,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            inputs={kind: inputs[kind] for kind in self.types},
            num_layers=k,
            rank=self.rank,
            separate=self.separate,
        )
        deltas = PerceptualDeltas(generator, targets, self.rank, self.alpha)
        log.info(
            "VLoRA: rank-%d deltas (%s) in %d layers (%s ... %s), generator D=%d x %d layers, %s",
            self.rank,
            self.types,
            k,
            targets[0].name,
            targets[-1].name,
            self.width,
            self.depth,
            "one per type" if self.separate else "one for all types",
        )
        return deltas
