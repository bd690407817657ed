"""One page for a benchmark sweep: ``python -m memvp_lab.benchmark.sweep_summary bench/<time>``.

Joins every study's ``bench.md`` (in the sweep's order) into ``SUMMARY.md`` with links to the
plots, and points ``bench/latest`` at the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from memvp_lab.paths import write_text_atomic


def summarize(sweep: Path) -> Path:
    studies = sorted((p.parent for p in sweep.glob("*/bench.json")), key=lambda p: p.stat().st_mtime)
    if not studies:
        raise SystemExit(f"{sweep}: no study results (*/bench.json) to summarise")
    machine = json.loads((studies[0] / "bench.json").read_text())["machine"]
    parts = [
        f"# Efficiency benchmarks ({sweep.name})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with "
        f"{machine['torch_threads']} threads" + (f", {machine['gpu']}" if "gpu" in machine else "") + ".",
        "",
    ]
    for folder in studies:
        text = (folder / "bench.md").read_text().strip()
        parts += [text, "", f"![{folder.name}]({folder.name}/bench.png)", ""]
    out = sweep / "SUMMARY.md"
    write_text_atomic(out, "\n".join(parts))
    latest = sweep.parent / "latest"
    if latest.is_symlink() or not latest.exists():
        tmp = sweep.parent / ".latest.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(sweep.name)
        os.replace(tmp, latest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a benchmark sweep folder (bench/<time>)")
    print(summarize(parser.parse_args().sweep))


if __name__ == "__main__":
    main()
