"""The MemVP paper's numbers (ICML 2024), read from their only home, ``experiments/<name>.paper.json``.

Two kinds of file live there. A table's file (``table1``, ``table2``, ...) names the metric of each
column and the rows its experiment's sweeps produce; ``python -m memvp_lab.report <name>`` shows
runs beside it. A study's file (``"study": "<name>"``: ``fig2_text_length``, ``fig4_left``) holds
what a figure states, for the benchmark study of that name; studies may also point to a table's
file (``conf/study/table3_*.yaml`` read ``table3``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping

from memvp_lab.errors import ConfigError
from memvp_lab.paths import experiments_dir

TRAINABLE_METRIC = "params/trainable"
# The tables whose #Trainable column the parameter table (python -m memvp_lab.params) checks.
TRAINABLE_TABLES = ("table1", "table2")


def paper_spec(name: str) -> dict:
    """The parsed ``experiments/<name>.paper.json``; an unknown name lists the known ones."""
    path = experiments_dir() / f"{name}.paper.json"
    if not path.exists():
        known = sorted(p.name.removesuffix(".paper.json") for p in path.parent.glob("*.paper.json"))
        raise ConfigError(f"no paper numbers named {name!r} ({path}); known: {', '.join(known)}")
    return json.loads(path.read_text())


def paper_column(spec: dict, metric: str) -> dict[str, dict[str, float]]:
    """``{row: {task: value}}`` of the columns that report ``metric`` (one per task), printed values."""
    columns = [(i, c.get("task")) for i, c in enumerate(spec["columns"]) if c["metric"] == metric]
    return {
        row: {task: cells[i] for i, task in columns if cells[i] is not None} for row, cells in spec["cells"].items()
    }


def paper_rows(spec: dict) -> dict[str, dict[str, float]]:
    """``{row: {metric: value}}`` of a file whose columns name distinct metrics (a study's file)."""
    metrics = [c["metric"] for c in spec["columns"]]
    return {row: {m: v for m, v in zip(metrics, cells) if v is not None} for row, cells in spec["cells"].items()}


@functools.cache
def trainable_m() -> dict[str, dict[str, float]]:
    """#Trainable in millions as printed, ``{backbone: {method: value}}``: Tables 1 and 2 (read once;
    callers must not change it)."""
    out: dict[str, dict[str, float]] = {}
    for name in TRAINABLE_TABLES:
        for row, by_task in paper_column(paper_spec(name), TRAINABLE_METRIC).items():
            backbone, method = row.split("/")
            for value in by_task.values():
                out.setdefault(backbone, {})[method] = value
    return out


@functools.cache
def trainable_decimals() -> dict[str, int]:
    """Decimals each backbone's #Trainable is printed with (a count matches when it rounds to it)."""
    out: dict[str, int] = {}
    for name in TRAINABLE_TABLES:
        spec = paper_spec(name)
        (column,) = [c for c in spec["columns"] if c["metric"] == TRAINABLE_METRIC]
        for row in spec["cells"]:
            out[row.split("/")[0]] = column["decimals"]
    return out


def study_reference(
    paper: Mapping | None, methods: list[str], reference: str, metrics: Collection[str]
) -> dict[str, dict[str, float]]:
    """The paper's ratio to ``reference`` of each method's ``metrics``, ``{method: {metric: ratio}}``.

    ``paper`` is a study's ``paper`` block: ``table`` (a paper file) and ``row``, the row key with
    ``{method}`` in it (``llama_7b/{method}``). Null: the study has no paper numbers.
    """
    if not paper:
        return {}
    rows = paper_rows(paper_spec(paper["table"]))
    key = paper.get("row", "{method}")
    base = rows.get(key.format(method=reference), {})
    out: dict[str, dict[str, float]] = {}
    for method in methods:
        values = rows.get(key.format(method=method), {})
        ratios = {m: v / base[m] for m, v in values.items() if m in metrics and base.get(m)}
        if method != reference and ratios:
            out[method] = ratios
    return out


def study_points(paper: Mapping | None) -> dict[str, dict[str, float]]:
    """A study file's rows as printed, ``{row: {metric: value}}`` (e.g. Fig. 2's ratios per length)."""
    return paper_rows(paper_spec(paper["table"])) if paper else {}
