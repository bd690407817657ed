"""Adding a method is one module and one YAML: a toy method installed as a plugin (an entry point
of the ``memvp_lab.methods`` group, as ``pip install`` would make it) appears in the config
groups, in ``python -m memvp_lab.params`` and in the method-parametrised tests, with no other
file touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore

from memvp_lab.config.compose import compose_config
from memvp_lab.errors import ConfigError
from memvp_lab.methods import registry
from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import methods, register_method, runs_on, target

REPO = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
"""A toy method: VL-T5's visual prompt alone, the language model frozen."""
from dataclasses import dataclass

from memvp_lab.methods.input_space.method import InputSpaceMethodConfig
from memvp_lab.methods.registry import register_method


@register_method("toy_prompt")
@dataclass
class ToyPromptConfig(InputSpaceMethodConfig):
    pass
'''

TOY_YAML = """
defaults:
  - toy_prompt_schema
  - _self_

name: toy_prompt
lr: 1.0e-3
weight_decay: 0.0
warmup_steps: 0
schedule: constant
unfreeze: []
prompt:
  pool_size: 6
  pool_mode: max
  init: normal
  vocab_init_std: 0.02
  projector_hidden: 128
  projector_bias: true
"""

# bart_base with clip_rn101: the visual embedding of VL-T5's prompt (2048 -> 768 projection, its
# layer norm and the box branch), which every Table 1 baseline also trains.
TOY_TRAINABLE_BART_BASE = 1_582_848


@pytest.fixture()
def plugin(tmp_path: Path) -> dict[str, str]:
    """An installed plugin: the module, its YAML beside it, and a dist-info with its entry point."""
    package = tmp_path / "toy_method"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TOY_MODULE))
    (package / "toy_prompt.yaml").write_text(TOY_YAML)
    info = tmp_path / "toy_method-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-method\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[memvp_lab.methods]\ntoy_prompt = toy_method\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_plugin_method_appears_everywhere(plugin):
    groups = run(["-m", "memvp_lab.train", "--help"], plugin)
    assert groups.returncode == 0, groups.stderr
    method_group = next(line for line in groups.stdout.splitlines() if line.startswith("method:"))
    assert {"toy_prompt", "toy_prompt_schema"} <= set(method_group.removeprefix("method: ").split(", "))

    params = run(["-m", "memvp_lab.params", "--backbone", "bart_base", "--json"], plugin)
    assert params.returncode == 0, params.stderr
    counts = json.loads(params.stdout)["bart_base"]
    assert counts["toy_prompt"] == TOY_TRAINABLE_BART_BASE
    assert counts["memvp"] == 3_784_704  # the built-in rows are still there

    tests = run(["-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_methods.py", "-k", "toy_prompt"], plugin)
    assert tests.returncode == 0, tests.stdout[-3000:]
    # 3 tiny backbones x every method-parametrised test of test_methods.py that takes (method, arch)
    ids = [line.split()[0] for line in tests.stdout.splitlines() if "toy_prompt" in line and " PASSED" in line]
    assert len(ids) >= 3 and all(any(arch in i for arch in ("tiny_bart", "tiny_t5", "tiny_llama")) for i in ids)
    assert f"{len(ids)} passed" in tests.stdout


@pytest.fixture()
def scratch_registry(monkeypatch):
    """Registrations made in a test are undone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(methods()))


@dataclass
class ToyInlineConfig(InputSpaceMethodConfig):
    pass


def test_registering_in_process_feeds_the_config_store(scratch_registry):
    register_method("toy_inline")(ToyInlineConfig)
    assert methods()["toy_inline"] is ToyInlineConfig and runs_on("toy_inline", True) and runs_on("toy_inline", False)
    compose_config()  # registers the schemas
    schema = ConfigStore.instance().load("method/toy_inline_schema.yaml").node
    assert schema._target_ == target(ToyInlineConfig) == f"{__name__}.ToyInlineConfig"
    assert set(schema) >= {"lr", "unfreeze", "prompt", "cache_frozen_prefix"}


def test_registry_refuses_mistakes(scratch_registry):
    with pytest.raises(TypeError, match="MethodConfig subclass"):
        register_method("not_a_method")(dict)

    with pytest.raises(ValueError, match="registered twice"):
        register_method("memvp")(ToyInlineConfig)

    @dataclass
    class Local(InputSpaceMethodConfig):
        pass

    with pytest.raises(TypeError, match="define a method at module level"):
        register_method("local")(Local)
    with pytest.raises(ConfigError, match="no such method; registered: adem_vl, compacter, full_ft"):
        registry.method_config("nope")


def test_built_in_methods_and_their_families():
    families = {name: cls.families for name, cls in methods().items()}
    both = ("decoder_only", "encoder_decoder")
    assert families == {
        "adem_vl": both,
        "compacter": both,
        "full_ft": both,
        "llava_lora": ("decoder_only",),
        "lora": both,
        "memvp": both,
        "vl_adapter": both,
        "vl_pet": ("encoder_decoder",),
        "vlora": both,
    }
