"""Our runs beside the paper's numbers: one cell per row (a config key) and column (task + metric),
the mean and spread over seeds, rendered as markdown, CSV and a plot (``python -m memvp_lab.report``)."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from memvp_lab.results.records import failed


@dataclass
class Cell:
    values: list[float]
    paper: float | None
    failed: int = 0  # runs of this cell that ended with an error instead of a score
    rules: set[str] = field(default_factory=set)  # metric_rule of the runs that scored it

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)


def _row_value(cfg: dict, field: str) -> str:
    """A config group's ``name`` (``backbone``) or a dotted key's value (``method.ablation``)."""
    value = cfg
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        value = value.get("name")
    return "null" if value is None else str(value)


def row_key(record: dict, fields: list[str]) -> str:
    return "/".join(_row_value(record["config"], f) for f in fields)


def _scored_by_rule(column: dict) -> bool:
    """The columns a run's ``metric_rule`` applies to: its VQA accuracies."""
    return "vqa_score" in column["metric"]


def build_table(spec: dict, runs: list[dict]) -> dict[str, list[Cell]]:
    rows: dict[str, list[Cell]] = {}
    keys = list(spec["cells"]) + sorted({row_key(r, spec["rows"]) for r in runs} - set(spec["cells"]))
    for key in keys:
        paper = spec["cells"].get(key, [None] * len(spec["columns"]))
        cells = []
        for column, paper_value in zip(spec["columns"], paper):
            mine = [
                r
                for r in runs
                if row_key(r, spec["rows"]) == key and ((r["config"].get("task") or {}).get("name")) == column["task"]
            ]
            scored = [r for r in mine if not failed(r) and column["metric"] in r]
            cells.append(
                Cell(
                    [r[column["metric"]] * column.get("scale", 1) for r in scored],
                    paper_value,
                    failed=sum(map(failed, mine)),
                    rules={r["metric_rule"] for r in scored if r.get("metric_rule") and _scored_by_rule(column)},
                )
            )
        rows[key] = cells
    return rows


def _counted(n: int, noun: str = "run") -> str:
    """``1 run``, ``3 runs``: a count and its noun, plural when more than one."""
    return f"{n} {noun}{'s' if n > 1 else ''}"


def version_warnings(runs: list[dict]) -> list[str]:
    """One line per package whose version differs between the runs of a table."""
    seen: dict[str, Counter] = {}
    for run in runs:
        for package, version in (run.get("versions") or {}).items():
            seen.setdefault(package, Counter())[version] += 1
    return [
        f"warning: runs made with different {package} versions: "
        + ", ".join(f"{v} ({_counted(n)})" for v, n in sorted(counts.items()))
        for package, counts in sorted(seen.items())
        if len(counts) > 1
    ]


def commit_notes(runs: list[dict]) -> list[str]:
    """Which commits the runs were made at (short shas and runs each, in the order the runs were
    read), and a warning for runs made from a work tree with uncommitted changes: no commit holds
    the code they ran. Runs without a recorded commit (W&B, older files) are left out."""
    commits: Counter = Counter()
    dirty: Counter = Counter()
    for run in runs:
        git = run.get("git") or {}
        if not git.get("sha"):
            continue
        commits[git["sha"][:7]] += 1
        dirty[git["sha"][:7]] += bool(git.get("dirty"))

    notes = []
    if commits:
        listed = ", ".join(f"{sha} ({_counted(n)})" for sha, n in commits.items())
        notes.append(f"runs made at commit{'s' if len(commits) > 1 else ''} {listed}")
    notes += [
        f"warning: {_counted(n)} at {sha} had uncommitted changes: no commit holds the code they ran"
        for sha, n in dirty.items()
        if n
    ]
    return notes


def thread_notes(runs: list[dict]) -> list[str]:
    """How many torch threads the runs used (``machine.torch_threads`` of their results.json): a
    note when they agree, a warning when they do not. The thread count changes the order of float
    sums, so a run repeats to the last digit only at the thread count it was made with."""
    counts = Counter(run["machine"]["torch_threads"] for run in runs if (run.get("machine") or {}).get("torch_threads"))
    if len(counts) == 1:
        ((threads, n),) = counts.items()
        return [f"runs made with {_counted(threads, 'torch thread')} ({_counted(n)})"]
    if counts:
        listed = ", ".join(f"{t} ({_counted(n)})" for t, n in sorted(counts.items()))
        return [
            f"warning: runs made with different torch thread counts: {listed}; a run repeats to the last digit "
            "only at its own thread count"
        ]
    return []


def scoring_notes(spec: dict, rows: dict[str, list[Cell]]) -> list[str]:
    """Which rule scored the columns that have one (VQA accuracy), one line per rule; a warning
    for a column that mixes rules."""
    by_rule: dict[str, list[str]] = {}
    notes = []
    for i, column in enumerate(spec["columns"]):
        rules = set().union(*(cells[i].rules for cells in rows.values())) if rows else set()
        if len(rules) == 1:
            by_rule.setdefault(rules.pop(), []).append(column["label"])
        elif rules:
            notes.append(f"warning: {column['label']} mixes VQA rules {sorted(rules)}: its cells are not comparable")
    return [f"scored with the `{rule}` VQA rule: {', '.join(labels)}" for rule, labels in by_rule.items()] + notes


def _fmt(cell: Cell, compare: bool = True) -> str:
    if not cell.values:
        ours = f"failed (n={cell.failed})" if cell.failed else "missing"
    else:
        ours = f"{cell.mean:.2f}" + (f" ± {cell.std:.2f}" if len(cell.values) > 1 else "") + f" (n={len(cell.values)})"
        ours += f" +{cell.failed} failed" if cell.failed else ""
    if cell.paper is None:
        return ours
    diff = "" if cell.mean is None or not compare else f", {cell.mean - cell.paper:+.2f}"
    return f"{ours} [paper {cell.paper:g}{diff}]"


def _compares(spec: dict) -> bool:
    """False for a CPU-scale reproduction: the paper's full-scale values are shown for reference,
    never subtracted from ours."""
    return not spec.get("paper_for_reference_only", False)


def render_markdown(spec: dict, rows: dict[str, list[Cell]], runs: list[dict] | None = None) -> str:
    head = " | ".join(["/".join(spec["rows"]), *(c["label"] for c in spec["columns"])])
    lines = [f"**{spec['title']}**", "", f"| {head} |", "|" + "---|" * (len(spec["columns"]) + 1)]
    compare = _compares(spec)
    lines += [f"| {key} | " + " | ".join(_fmt(c, compare) for c in cells) + " |" for key, cells in rows.items()]
    legend = (
        ""
        if spec.get("without_paper")
        else (" [paper value, ours - paper]" if compare else " [the paper's full-scale value, for reference only]")
    )
    lines += [
        "",
        f"Cells: ours as mean ± std over runs (n){legend}; `missing`: no run yet; `failed`: runs "
        "that ended with an error (their results.json says which).",
    ]
    notes = spec.get("notes") or []
    notes = [
        *([notes] if isinstance(notes, str) else notes),
        *scoring_notes(spec, rows),
        *version_warnings(runs or []),
        *commit_notes(runs or []),
        *thread_notes(runs or []),
    ]
    lines += ["", "Notes:", *(f"- {n}" for n in notes)] if notes else []
    return "\n".join(lines)


def _metrics(axis: str | list[str]) -> list[str]:
    return [axis] if isinstance(axis, str) else list(axis)


def plot_points(spec: dict, rows: dict[str, list[Cell]]) -> dict[str, dict[str, list[tuple[float, float, str]]]]:
    """``{"ours" | "paper": {series: [(x, y, label), ...]}}`` for the json's ``plot``.

    A row's x (y) is the mean of its columns whose metric is ``plot.x`` (``plot.y``, one key or a
    list: e.g. the average score over three tasks); a row without a value in one of those columns
    has no point. ``series`` (a ``rows`` field) groups the points; the other fields label them
    (``pool_size=6``).
    """
    plot = spec["plot"]
    xs, ys = _metrics(plot["x"]), _metrics(plot["y"])
    series_at = spec["rows"].index(plot["series"]) if plot.get("series") else None
    out: dict[str, dict[str, list[tuple[float, float, str]]]] = {"ours": {}, "paper": {}}
    for key, cells in rows.items():
        parts = key.split("/")
        series = parts[series_at] if series_at is not None and len(parts) == len(spec["rows"]) else "all"
        label = ", ".join(f"{field}={p}" for i, (field, p) in enumerate(zip(spec["rows"], parts)) if i != series_at)
        for which, value in (("ours", lambda c: c.mean), ("paper", lambda c: c.paper)):
            point = []
            for metrics in (xs, ys):
                values = [value(c) for column, c in zip(spec["columns"], cells) if column["metric"] in metrics]
                point.append(statistics.fmean(values) if values and None not in values else None)
            if None not in point:
                out[which].setdefault(series, []).append((point[0], point[1], label))
    for by_series in out.values():
        for points in by_series.values():
            points.sort()
    return out


def write_plot(path: Path, spec: dict, rows: dict[str, list[Cell]]) -> dict:
    """The json's ``plot`` as a PNG (matplotlib's Agg canvas, no display needed); returns the points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plot, points = spec["plot"], plot_points(spec, rows)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(dict.fromkeys([*points["ours"], *points["paper"]]))
    for i, name in enumerate(names):
        color = f"C{i}"
        for which, style in (
            ("ours", dict(marker="o", linestyle="-")),
            ("paper", dict(marker="s", linestyle="--", markerfacecolor="none")),
        ):
            series = points[which].get(name, [])
            if not series:
                continue
            x, y, labels = zip(*series)
            ax.plot(x, y, color=color, label=f"{name} ({which})", **style)
            for xi, yi, text in zip(x, y, labels):
                if text:
                    ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    if not names:
        ax.text(0.5, 0.5, "no complete point yet (see the table)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(plot.get("x_label") or ", ".join(_metrics(plot["x"])))
    ax.set_ylabel(plot.get("y_label") or ", ".join(_metrics(plot["y"])))
    ax.set_title(plot.get("title") or spec["title"], fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return points


def write_csv(path: Path, spec: dict, rows: dict[str, list[Cell]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "column", "mean", "std", "n", "failed", "rule", "paper", "difference"])
        for key, cells in rows.items():
            for column, cell in zip(spec["columns"], cells):
                diff = (
                    None if cell.mean is None or cell.paper is None or not _compares(spec) else cell.mean - cell.paper
                )
                writer.writerow(
                    [
                        key,
                        column["label"],
                        cell.mean,
                        cell.std,
                        len(cell.values),
                        cell.failed,
                        "+".join(sorted(cell.rules)),
                        cell.paper,
                        diff,
                    ]
                )
