"""The method registry: every method registers its config class once, by name.

    @register_method("my_method")
    @dataclass
    class MyMethodConfig(MethodConfig): ...

The registry feeds Hydra's ConfigStore (``<name>_schema``, the typed schema ``conf/method/<name>.yaml``
builds on), ``python -m memvp_lab.params``, the benchmark studies and the tests' method lists.
Methods are found by importing every module of ``memvp_lab.methods`` and every module named by the
``memvp_lab.methods`` entry-point group of installed packages (methods that live outside this
project); ``methods()`` does both on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

from memvp_lab.errors import ConfigError
from memvp_lab.methods.contract import MethodConfig

_REGISTRY: dict[str, type[MethodConfig]] = {}
_discovered = False
ENTRY_POINT_GROUP = "memvp_lab.methods"


def register_method(name: str):
    """Class decorator: registers a ``MethodConfig`` subclass as ``method=<name>``."""

    def decorate(cls: type[MethodConfig]) -> type[MethodConfig]:
        if not (isinstance(cls, type) and issubclass(cls, MethodConfig)):
            raise TypeError(f"@register_method({name!r}) decorates a MethodConfig subclass, not {cls!r}")
        if "<locals>" in cls.__qualname__:
            raise TypeError(f"{cls.__qualname__}: define a method at module level, where Hydra can import it")
        known = _REGISTRY.get(name)
        if known is not None and f"{known.__module__}.{known.__qualname__}" != f"{cls.__module__}.{cls.__qualname__}":
            raise ValueError(f"method {name!r} is registered twice: {known.__qualname__} and {cls.__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def discover() -> None:
    """Imports every built-in method module and every installed entry point, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import memvp_lab.methods as package

    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def methods() -> dict[str, type[MethodConfig]]:
    """Every registered method: name -> config class, in registration order."""
    discover()
    return dict(_REGISTRY)


def method_config(name: str) -> type[MethodConfig]:
    known = methods()
    if name not in known:
        raise ConfigError(f"method={name}: no such method; registered: {', '.join(sorted(known))}")
    return known[name]


def target(cls: type[MethodConfig]) -> str:
    """The ``_target_`` Hydra instantiates for ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def runs_on(name: str, is_encoder_decoder: bool) -> bool:
    """Whether method ``name`` runs on a backbone of that family."""
    family = "encoder_decoder" if is_encoder_decoder else "decoder_only"
    return family in method_config(name).families
