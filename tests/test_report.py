"""Reports aggregate results.json files over seeds beside the paper's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from memvp_lab.report import main


def _result(root: Path, backbone: str, method: str, task: str, seed: int, metrics: dict, experiment="table1") -> None:
    folder = root / backbone / method / task / f"seed{seed}"
    folder.mkdir(parents=True)
    config = {"experiment_name": experiment, "backbone": {"name": backbone}, "method": {"name": method},
              "task": {"name": task}, "seed": seed}
    (folder / "results.json").write_text(json.dumps({**metrics, "config": config}))


def test_table1_report_means_stds_paper_values_and_missing_cells(tmp_path, capsys):
    runs = tmp_path / "runs"
    _result(runs, "bart_base", "memvp", "vqav2", 0, {"test/vqa_score": 0.650, "flops/lm_gflops_per_sample": 1.2})
    _result(runs, "bart_base", "memvp", "vqav2", 1, {"test/vqa_score": 0.654, "flops/lm_gflops_per_sample": 1.2})
    _result(runs, "bart_base", "memvp", "gqa", 0, {"test/accuracy": 0.55})
    _result(runs, "bart_base", "lora", "vqav2", 0, {"test/vqa_score": 0.9}, experiment="other")  # not in table1
    assert main(["table1", "--results", str(runs), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "table1.md").read_text()
    memvp = next(l for l in markdown.splitlines() if l.startswith("| bart_base/memvp"))
    assert "65.20 ± 0.28 (n=2) [paper 65.2, +0.00]" in memvp
    assert "55.00 (n=1) [paper 55.1, -0.10]" in memvp
    assert "missing [paper 120.2]" in memvp  # COCO never ran: missing, not zero
    lora = next(l for l in markdown.splitlines() if l.startswith("| bart_base/lora"))
    assert "n=" not in lora  # the run of another experiment does not count
    rows = list(csv.DictReader((tmp_path / "out" / "table1.csv").open()))
    cell = next(r for r in rows if r["row"] == "bart_base/memvp" and r["column"] == "VQAv2 VQA score")
    assert float(cell["mean"]) == pytest.approx(65.2) and cell["n"] == "2" and float(cell["paper"]) == 65.2


def test_unknown_experiment_is_named(capsys):
    assert main(["no_such_table"]) == 2
    assert "no_such_table" in capsys.readouterr().err
