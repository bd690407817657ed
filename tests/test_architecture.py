"""The package's layers form a DAG: no import runs up the stack, no package imports its way back.

Layers, top to bottom (a module may import from its own layer or any layer below it; two packages
of one layer must not import each other in a circle, and neither may two modules of one package).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import memvp_lab

PACKAGE = Path(memvp_lab.__file__).parent

LAYERS = [
    # entry points: each is `python -m memvp_lab.<name>`
    {"train", "evaluate", "features", "params", "bench", "report", "visualize", "predict", "export", "prepare"},
    # on top of training: cost benchmarks, visual-knowledge plots, a trained adapter answering
    # questions, the key=value command line of the tools that work on a finished run
    {"benchmark", "visualization", "predictor", "key_value_cli"},
    # training a built model, and what a run produced (results.json, summaries, reports)
    {"training", "results"},
    # composing and validating a config; the method registry feeds its schemas
    {"config"},
    # the methods: configs that build a VisionLanguageModel on a backbone
    {"methods"},
    # the model a method builds: LM + prompting interface, FLOP counting
    {"model"},
    # what a model is made of and fed with
    {"backbones", "vision", "data", "metrics"},
    # building blocks on plain torch modules
    {"nn"},
    # the foundation: errors, the batch type, files, random streams
    {"errors", "batch", "paths", "rng", "wheel_files"},
]
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``memvp_lab`` module ``path`` imports, at module level or inside functions."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.startswith("memvp_lab.") and _exists(t))
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] |= _imports(path) - {_module_name(path)}
    return dict(graph)


def _unit(module: str, depth: int) -> str:
    """The ancestor of ``module`` ``depth`` levels below ``memvp_lab`` (or the module itself)."""
    return ".".join(module.split(".")[: depth + 1])


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` (as a closed path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """For every package, a cycle among its direct children (sub-packages and modules), if any."""
    cycles = []
    packages = {m for m in graph if (PACKAGE.parent.joinpath(*m.split(".")) / "__init__.py").is_file()}
    for package in sorted(packages):
        depth = package.count(".") + 1
        children = defaultdict(set)
        for source, targets in graph.items():
            if not source.startswith(package + ".") or source == package:
                continue
            for target in targets:
                if target.startswith(package + ".") and _unit(target, depth) != _unit(source, depth):
                    children[_unit(source, depth)].add(_unit(target, depth))
        if found := _cycle(children):
            cycles.append(found)
    return cycles


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in graph.items():
        for target in targets:
            a, b = source.split(".")[1] if "." in source else None, target.split(".")[1]
            if a is None or a == b:
                continue
            if RANK[a] > RANK[b]:
                bad.append(f"{source} (layer {RANK[a]}) imports {target} (layer {RANK[b]})")
    return sorted(bad)


def test_every_top_level_unit_has_a_layer():
    units = {
        _module_name(p).split(".")[1] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__"
    }
    assert units - set(RANK) == set(), "add the new module or package to LAYERS"
    assert set(RANK) - units == set(), "LAYERS names a module that does not exist"


def test_no_import_runs_up_the_stack():
    assert upward_imports(import_graph()) == []


def test_no_package_cycles():
    assert package_cycles(import_graph()) == []


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_cycle_finder(edges, expected):
    assert _cycle(edges) == expected


def test_checks_catch_a_bad_graph():
    """The two checks fail on an upward import and on a cycle between sibling packages."""
    graph = {
        "memvp_lab.batch": {"memvp_lab.training.lit_module"},
        "memvp_lab.methods.memvp.method": {"memvp_lab.methods.lora"},
        "memvp_lab.methods.lora": {"memvp_lab.methods.memvp.memory"},
    }
    assert upward_imports(graph) == ["memvp_lab.batch (layer 8) imports memvp_lab.training.lit_module (layer 2)"]
    assert package_cycles({**graph, "memvp_lab.methods": set()}) == [
        ["memvp_lab.methods.lora", "memvp_lab.methods.memvp", "memvp_lab.methods.lora"]
    ]
