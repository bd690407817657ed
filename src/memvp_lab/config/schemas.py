"""What Hydra's ConfigStore holds besides ``conf/``: the typed schemas that config files build on
(``defaults: [<name>_schema, _self_]``) and the ``experiment`` group, read from ``experiments/``.

A schema fixes the keys and their types; the YAML file gives the values. A misspelt key or a
value of the wrong type then fails at composition, naming the key. Every registered method
(``memvp_lab.methods.registry``) gets ``method/<name>_schema`` with its ``_target_`` filled in.

``experiments/<name>.yaml`` is ``experiment=<name>`` (a global overlay, applied last); the folder
lives beside ``conf/`` rather than inside it, and Hydra reads it from the ConfigStore.

A method that lives outside this project (registered through the ``memvp_lab.methods`` entry-point
group) keeps its values in ``<name>.yaml`` beside its module; that file becomes ``method=<name>``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from memvp_lab.errors import ConfigError
from memvp_lab.methods.registry import methods, target
from memvp_lab.paths import config_dir, experiments_dir

_registered: tuple | None = None  # what the ConfigStore was last filled from


def register_configs() -> None:
    """Adds the method schemas and the experiments to Hydra's ConfigStore (idempotent).

    Registering takes longer than composing a config, so it is repeated only when the registered
    methods or the experiment files (names, modification times) changed since the last time.
    """
    global _registered
    experiments = sorted(experiments_dir().glob("*.yaml"))
    state = (tuple(methods().items()), tuple((p, p.stat().st_mtime_ns) for p in experiments))
    if state == _registered and all(ConfigStore.instance().repo.get(g) for g in ("method", "experiment")):
        return
    register_schemas()
    register_experiments()
    _registered = state


def register_experiments() -> None:
    """Every ``experiments/<name>.yaml`` as ``experiment=<name>``, at the global package."""
    cs = ConfigStore.instance()
    for path in sorted(experiments_dir().glob("*.yaml")):
        try:
            node = OmegaConf.load(path)
        except Exception as err:  # a YAML syntax error names the file and line
            raise ConfigError(f"{path}: {err}") from None
        cs.store(group="experiment", name=path.stem, node=node, package="_global_")


def register_schemas() -> None:
    """Adds every registered method's schema (and an outside method's values) to Hydra's
    ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, cls in methods().items():
        schema = OmegaConf.structured(cls)
        schema._target_ = target(cls)
        cs.store(group="method", name=f"{name}_schema", node=schema)
        if not (config_dir() / "method" / f"{name}.yaml").is_file():
            values = Path(inspect.getfile(cls)).with_name(f"{name}.yaml")
            if values.is_file():
                cs.store(group="method", name=name, node=_values(schema, values))


def _values(schema, path: Path):
    """``path``'s values on ``schema`` (its ``defaults`` list, which names the schema, dropped)."""
    values = OmegaConf.load(path)
    values.pop("defaults", None)
    try:
        return OmegaConf.merge(schema, values)
    except Exception as err:  # omegaconf's validation errors name the key
        raise ConfigError(f"{path}: {err}") from None
