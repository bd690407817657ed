"""The ``key=value`` command lines of the tools that work on a finished run (evaluate, predict,
export): parsing, ``--help``, and one ``error: ...`` line with exit code 2 for a user's mistake."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from memvp_lab.errors import USER_ERRORS, CheckpointMismatch, ConfigError


def parse_key_values(
    argv: Sequence[str],
    tool: str,
    settings: Sequence[str],
    override_prefixes: tuple[str, ...] = (),
    fixed_model: str | None = None,
    example: str = "run_dir=outputs/demo/<time>",
) -> tuple[dict[str, str], list[str]]:
    """``(settings, overrides)`` from ``key=value`` arguments.

    Args:
        tool: the module name, for messages (``memvp_lab.evaluate``).
        settings: the tool's own keys.
        override_prefixes: dotted config keys the tool passes on (``task.``).
        fixed_model: the message for any other dotted key (the run's model cannot change); None
            treats it as an unknown setting.
        example: shown when an argument has no ``=``.
    """
    values, overrides = {}, []
    allowed = ", ".join(settings) + "".join(f", {p}<key>=<value>" for p in override_prefixes)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"{arg}: expected key=value (e.g. {example})")
        if key in settings:
            values[key] = value
        elif override_prefixes and key.startswith(override_prefixes):
            overrides.append(arg)
        elif "." in key and fixed_model:
            raise ConfigError(f"{key}: {fixed_model}")
        else:
            raise ConfigError(f"{key}: not a setting of python -m {tool}; expected {allowed}")
    return values, overrides


def positive_int(settings: dict[str, str], key: str, default: int | None = None) -> int | None:
    """``settings[key]`` as a positive whole number (``default`` when absent)."""
    if key not in settings:
        return default
    if not settings[key].isdigit() or int(settings[key]) < 1:
        raise ConfigError(f"{key}={settings[key]}: expected a positive whole number")
    return int(settings[key])


def run_tool(doc: str, body: Callable[[list[str]], None], argv: list[str] | None, level: int = logging.INFO) -> int:
    """Runs ``body(argv)``: ``--help`` prints ``doc``; a user's mistake is one line, exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    logging.basicConfig(level=level, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        body(argv)
    except (*USER_ERRORS, CheckpointMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
