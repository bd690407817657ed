"""Paper-style tables from the ``results.json`` files of an experiment's runs.

    python -m memvp_lab.report table1                       # reads multirun/ and outputs/
    python -m memvp_lab.report table1 --results /runs --out reports/
    python -m memvp_lab.report table1 --results --wandb my_team/memvp_lab   # runs logged to W&B

Runs belong to an experiment by their ``experiment_name`` (the json's ``experiment_name`` when a
table reads the runs of another experiment, e.g. Table 3's timings come from Table 2's runs); a
table cell is the mean and standard deviation over the runs (seeds) of its row and column (task +
metric), shown beside the paper's value from ``experiments/<name>.paper.json`` and the difference.
A row is named by the config keys in ``rows``: a config group gives its ``name`` (``backbone``),
a dotted key its value (``method.ablation``; null shown as ``null``). Cells without runs say
``missing`` (never 0); cells whose runs failed (``"status": "failed"`` in their results.json) say
``failed``. The report names the rule that scored a metric where a task has more than one
(``metric_rule``: VQA accuracy ``official`` or ``vl_t5``) and warns when the runs of one table
were made with different package versions; it names the commits the runs were made at and
warns about runs made with uncommitted changes. Writes ``<out>/<name>.md`` and ``<name>.csv``; when the json declares a
``plot`` (``{"x": metric(s), "y": metric(s), "series": row key}``), also ``<out>/<name>.png``:
one point per row, the mean of its columns of those metrics, measured beside the paper's.
A json with ``"without_paper": true`` tabulates our runs only (no paper value exists, e.g. the
embedded default over seeds). Exits 1 (after writing everything) when a cell has failed runs, so a sweep's make target fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memvp_lab.errors import ConfigError
from memvp_lab.results.paper_numbers import paper_spec
from memvp_lab.results.paper_table import build_table, render_markdown, write_csv, write_plot
from memvp_lab.results.records import load_runs, load_wandb_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memvp_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="an experiment with paper numbers, e.g. table1")
    parser.add_argument(
        "--results",
        nargs="*",
        type=Path,
        default=[Path("multirun"), Path("outputs")],
        help="folders searched for results.json (default: multirun outputs)",
    )
    parser.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        default=None,
        help="also read the experiment's runs from this W&B project (online)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    try:
        spec = paper_spec(args.experiment)
        if "study" in spec:
            raise ConfigError(
                f"{args.experiment!r} holds the paper's numbers of a benchmark study, not a table of runs: "
                f"python -m memvp_lab.bench study={spec['study']}"
            )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    source = spec.get("experiment_name", args.experiment)
    runs = load_runs(args.results, source)
    if args.wandb:
        runs += load_wandb_runs(args.wandb, source)
    rows = build_table(spec, runs)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(spec, rows, runs)
    if spec.get("plot"):
        write_plot(args.out / f"{args.experiment}.png", spec, rows)
        markdown += f"\n\n![{spec['title']}]({args.experiment}.png)"
    (args.out / f"{args.experiment}.md").write_text(markdown + "\n")
    write_csv(args.out / f"{args.experiment}.csv", spec, rows)
    print(markdown)
    failures = [
        f"{key} / {column['label']}"
        for key, cells in rows.items()
        for column, cell in zip(spec["columns"], cells)
        if cell.failed
    ]
    if failures:
        print(
            f"error: {len(failures)} cell(s) have failed runs (their results.json names the error): "
            + "; ".join(failures),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
