"""Registers the typed schemas that config files build on (``defaults: [<name>_schema, _self_]``).

A schema fixes the keys and their types; the YAML file gives the values. A misspelt key or a
value of the wrong type then fails at composition, naming the key.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from memvp_lab.methods.compacter import CompacterConfig
from memvp_lab.methods.full_ft import FullFineTuningConfig
from memvp_lab.methods.llava_lora import LlavaLoRAConfig
from memvp_lab.methods.lora import LoRAConfig
from memvp_lab.methods.memvp.config import MemVPConfig
from memvp_lab.methods.vl_adapter import VLAdapterConfig
from memvp_lab.methods.vl_pet import VLPETConfig

METHOD_SCHEMAS = {
    "memvp_schema": MemVPConfig,
    "lora_schema": LoRAConfig,
    "llava_lora_schema": LlavaLoRAConfig,
    "vl_adapter_schema": VLAdapterConfig,
    "compacter_schema": CompacterConfig,
    "vl_pet_schema": VLPETConfig,
    "full_ft_schema": FullFineTuningConfig,
}


def register_schemas() -> None:
    """Adds every schema to Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, node in METHOD_SCHEMAS.items():
        cs.store(group="method", name=name, node=node)
