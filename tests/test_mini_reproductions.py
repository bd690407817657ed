"""The CPU-scale paper reproductions run end to end as Hydra sweeps and render their reports
(on tiny models here; `make reproduce-mini-table-N` runs them on the embedded default)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from helpers import TINY_DATA

# Explicit steps too: an experiment may pin the trainer's (mini_table3 does), command-line values win.
TINY = [
    "backbone=tiny_llama",
    "trainer=debug",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "logger=csv",
    *TINY_DATA,
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "rows"),
    [
        ("mini_table4", ["none", "no_visual", "global_feature", "concat_position", "keys_only", "values_only"]),
        ("mini_table3", ["memvp", "llava_lora"]),
        ("adem_vl_table6", ["baseline", "cls", "xattn", "multiscale", "fusion"]),
        ("mini_compare", ["memvp", "adem_vl", "vlora", "llava_lora"]),
    ],
)
def test_mini_reproduction_sweeps_and_reports(experiment, rows, data_dir, tmp_path):
    sweep = tmp_path / "multirun"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "memvp_lab.train",
            "-m",
            f"experiment={experiment}",
            *TINY,
            "hydra.sweeper.params.seed=0",
            f"paths.data_dir={data_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        check=True,
        capture_output=True,
    )
    assert len(list(sweep.rglob("results.json"))) == len(rows)
    out = tmp_path / "reports"
    report = subprocess.run(
        [sys.executable, "-m", "memvp_lab.report", experiment, "--results", str(sweep), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # mini_compare is a table of our own runs: no paper numbers to show for reference
    assert ("for reference only" in report) == (experiment != "mini_compare")
    assert "missing |" not in report and "| missing" not in report
    table = list(csv.DictReader((out / f"{experiment}.csv").open()))
    assert [r["row"] for r in table][:: len(table) // len(rows)] == rows
    assert all(r["n"] == "1" and r["mean"] != "" and r["difference"] == "" for r in table)
    # The runs wrote what the columns read: #trainable differs between rows that train different tensors.
    trainable = {r["row"]: float(r["mean"]) for r in table if r["column"].startswith("#Trainable")}
    assert len(set(trainable.values())) > 1


@pytest.mark.slow
def test_a_failing_cell_leaves_the_sweep_going_and_the_report_says_failed(data_dir, tmp_path):
    """One cell of a sweep fails (an unknown ablation, found when the run validates its config):
    the cells after it still run, it writes a failed results.json, the report shows it as
    `failed` (not `missing`) and exits non-zero, and so does the sweep."""
    sweep = tmp_path / "multirun"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memvp_lab.train",
            "-m",
            "experiment=mini_table4",
            *TINY,
            "ablation=bogus,none",
            "seed=0",
            f"paths.data_dir={data_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0  # the sweep ran every cell, then reports the failure
    failed = json.loads((sweep / "bogus" / "seed0" / "results.json").read_text())
    assert failed["status"] == "failed" and "bogus" in failed["error"]
    assert json.loads((sweep / "none" / "seed0" / "results.json").read_text())["status"] == "completed"
    out = tmp_path / "reports"
    report = subprocess.run(
        [sys.executable, "-m", "memvp_lab.report", "mini_table4", "--results", str(sweep), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 1
    assert "cell(s) have failed runs" in report.stderr and "bogus" in report.stderr
    rows = {r["row"]: r for r in csv.DictReader((out / "mini_table4.csv").open()) if r["column"].startswith("VQA")}
    assert rows["bogus"]["failed"] == "1" and rows["bogus"]["n"] == "0"
    assert rows["none"]["failed"] == "0" and rows["none"]["n"] == "1"
    assert "| bogus | failed (n=1)" in report.stdout and "| no_visual | missing" in report.stdout
