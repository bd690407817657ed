"""Paper-style tables from the ``results.json`` files of an experiment's runs.

    python -m memvp_lab.report table1                       # reads multirun/ and outputs/
    python -m memvp_lab.report table1 --results /runs --out reports/

Runs belong to an experiment by their ``experiment_name``; a table cell is the mean and standard
deviation over the runs (seeds) of its row (``backbone/method``) and column (task + metric),
shown beside the paper's value from ``experiments/<name>.paper.json`` and the difference.
Cells without runs say ``missing`` (never 0). Writes ``<out>/<name>.md`` and ``<name>.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from memvp_lab.paths import config_dir


@dataclass
class Cell:
    values: list[float]
    paper: float | None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)


def paper_spec(experiment: str) -> dict:
    path = config_dir() / "experiment" / f"{experiment}.paper.json"
    if not path.exists():
        known = sorted(p.name.removesuffix(".paper.json") for p in path.parent.glob("*.paper.json"))
        raise FileNotFoundError(f"no paper numbers for experiment {experiment!r} ({path}); known: {known}")
    return json.loads(path.read_text())


def load_runs(roots: list[Path], experiment: str) -> list[dict]:
    """Every results.json under ``roots`` whose config names ``experiment``."""
    runs = []
    for root in roots:
        for path in sorted(Path(root).rglob("results.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a run still writing, or a foreign file
            if (record.get("config") or {}).get("experiment_name") == experiment:
                runs.append(record)
    return runs


def _row_key(record: dict, fields: list[str]) -> str:
    cfg = record["config"]
    return "/".join(str(cfg[f]["name"] if isinstance(cfg.get(f), dict) else cfg.get(f)) for f in fields)


def build_table(spec: dict, runs: list[dict]) -> dict[str, list[Cell]]:
    rows: dict[str, list[Cell]] = {}
    keys = list(spec["cells"]) + sorted({_row_key(r, spec["rows"]) for r in runs} - set(spec["cells"]))
    for key in keys:
        paper = spec["cells"].get(key, [None] * len(spec["columns"]))
        cells = []
        for column, paper_value in zip(spec["columns"], paper):
            values = [r[column["metric"]] * column.get("scale", 1) for r in runs
                      if _row_key(r, spec["rows"]) == key and r["config"]["task"]["name"] == column["task"]
                      and column["metric"] in r]
            cells.append(Cell(values, paper_value))
        rows[key] = cells
    return rows


def _fmt(cell: Cell) -> str:
    if not cell.values:
        ours = "missing"
    else:
        ours = f"{cell.mean:.2f}" + (f" ± {cell.std:.2f}" if len(cell.values) > 1 else "") + f" (n={len(cell.values)})"
    if cell.paper is None:
        return ours
    diff = "" if cell.mean is None else f", {cell.mean - cell.paper:+.2f}"
    return f"{ours} [paper {cell.paper:g}{diff}]"


def render_markdown(spec: dict, rows: dict[str, list[Cell]]) -> str:
    head = " | ".join(["/".join(spec["rows"]), *(c["label"] for c in spec["columns"])])
    lines = [f"**{spec['title']}**", "", f"| {head} |", "|" + "---|" * (len(spec["columns"]) + 1)]
    lines += [f"| {key} | " + " | ".join(_fmt(c) for c in cells) + " |" for key, cells in rows.items()]
    lines += ["", "Cells: ours as mean ± std over runs (n), [paper value, ours - paper]; `missing`: no run yet."]
    return "\n".join(lines)


def write_csv(path: Path, spec: dict, rows: dict[str, list[Cell]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "column", "mean", "std", "n", "paper", "difference"])
        for key, cells in rows.items():
            for column, cell in zip(spec["columns"], cells):
                diff = None if cell.mean is None or cell.paper is None else cell.mean - cell.paper
                writer.writerow([key, column["label"], cell.mean, cell.std, len(cell.values), cell.paper, diff])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memvp_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="an experiment with paper numbers, e.g. table1")
    parser.add_argument("--results", nargs="*", type=Path, default=[Path("multirun"), Path("outputs")],
                        help="folders searched for results.json (default: multirun outputs)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    try:
        spec = paper_spec(args.experiment)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = build_table(spec, load_runs(args.results, args.experiment))
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(spec, rows)
    (args.out / f"{args.experiment}.md").write_text(markdown + "\n")
    write_csv(args.out / f"{args.experiment}.csv", spec, rows)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
