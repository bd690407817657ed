"""Reports aggregate results.json files over seeds beside the paper's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from memvp_lab.report import main
from memvp_lab.results.paper_numbers import paper_spec
from memvp_lab.results.paper_table import build_table
from memvp_lab.results.records import load_wandb_runs


def _result(
    root: Path,
    backbone: str,
    method: str,
    task: str,
    seed: int,
    metrics: dict,
    experiment="table1",
    method_fields: dict | None = None,
    **config_fields,
) -> None:
    """A results.json as a run writes it: metrics + the resolved config (only the keys reports read)."""
    folder = (
        root / backbone / method / "-".join(f"{k}{v}" for k, v in {**(method_fields or {}), **config_fields}.items())
    )
    folder = folder / task / f"seed{seed}"
    folder.mkdir(parents=True)
    config = {
        "experiment_name": experiment,
        "backbone": {"name": backbone},
        "method": {"name": method, **(method_fields or {})},
        "task": {"name": task},
        "seed": seed,
        **config_fields,
    }
    (folder / "results.json").write_text(json.dumps({**metrics, "config": config}))


def _row(markdown: str, key: str) -> str:
    return next(l for l in markdown.splitlines() if l.startswith(f"| {key} |"))


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


def test_table4_rows_are_keyed_by_a_dotted_config_key(tmp_path):
    runs = tmp_path / "runs"
    scores = {"test/accuracy": 0.85, "test/accuracy/IMG": 0.76, "params/trainable": 3_281_920}
    _result(runs, "llama_7b", "memvp", "scienceqa", 0, scores, "table4", {"ablation": "no_visual"})
    _result(
        runs,
        "llama_7b",
        "memvp",
        "scienceqa",
        0,
        {"test/accuracy": 0.9301, "params/trainable": 3_870_848},
        "table4",
        {"ablation": "none"},
    )
    _result(
        runs,
        "llama_7b",
        "memvp",
        "scienceqa",
        1,
        {"test/accuracy": 0.9321, "params/trainable": 3_870_848},
        "table4",
        {"ablation": "none"},
    )
    assert main(["table4", "--results", str(runs), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "table4.md").read_text()
    assert markdown.splitlines()[2] == "| method.ablation | Average | IMG | #Trainable (M) |"
    no_visual = _row(markdown, "no_visual")
    assert "85.00 (n=1) [paper 85.33, -0.33]" in no_visual and "76.00 (n=1) [paper 76.05, -0.05]" in no_visual
    assert "3.28 (n=1) [paper 3.3, -0.02]" in no_visual
    none = _row(markdown, "none")
    assert "93.11 ± 0.14 (n=2) [paper 93.07, +0.04]" in none
    assert "missing [paper 92.36]" in none  # the runs logged no IMG accuracy: missing, not zero
    assert "missing [paper 89.01]" in _row(markdown, "global_feature")
    assert [l.split(" |")[0][2:] for l in markdown.splitlines()[4:10]] == [
        "none",
        "no_visual",
        "global_feature",
        "concat_position",
        "keys_only",
        "values_only",
    ]  # the paper's order
    assert "Notes:" in markdown and "LaVIN" in markdown
    rows = list(csv.DictReader((tmp_path / "out" / "table4.csv").open()))
    cell = next(r for r in rows if r["row"] == "none" and r["column"] == "Average")
    assert float(cell["mean"]) == pytest.approx(93.11) and float(cell["difference"]) == pytest.approx(0.04)


def test_table3_reads_the_runs_of_table2(tmp_path):
    runs = tmp_path / "runs"
    timings = {
        "time/train_s_per_step": 0.31,
        "time/eval_s_per_batch": 2.0,
        "test/accuracy": 0.93,
        "params/trainable": 3_870_848,
    }
    _result(runs, "llama_7b", "memvp", "scienceqa", 0, timings, "table2")
    _result(runs, "llama_7b", "llava_lora", "scienceqa", 0, {"time/train_s_per_step": 9.0}, "table3")  # not table2's
    assert main(["table3", "--results", str(runs), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "table3.md").read_text()
    memvp = _row(markdown, "llama_7b/memvp")
    assert "0.31 (n=1) [paper 0.28, +0.03]" in memvp and "2.00 (n=1) [paper 1.88, +0.12]" in memvp
    assert "93.00 (n=1) [paper 93.07, -0.07]" in memvp and "3.87 (n=1) [paper 3.9, -0.03]" in memvp
    assert "missing [paper 0.49]" in _row(markdown, "llama_7b/llava_lora")
    assert not (tmp_path / "out" / "table3.png").exists()  # no plot declared


def _fig4_runs(runs: Path) -> None:
    # (method, pool_size) -> (vqa score, gqa accuracy, cider, vqav2 / gqa / coco GFLOPs)
    cells = {
        ("vl_pet", 2): (0.60, 0.50, 1.05, 2.0, 2.5, 3.5),
        ("vl_pet", 6): (0.65, 0.54, 1.20, 5.0, 5.5, 6.5),
        ("memvp", None): (0.66, 0.55, 1.19, 1.3, 1.9, 2.9),
    }
    for (method, pool), (vqa, gqa, cider, *flops) in cells.items():
        for task, metric, score, gflops in (
            ("vqav2", "test/vqa_score", vqa, flops[0]),
            ("gqa", "test/accuracy", gqa, flops[1]),
            ("coco_caption", "test/cider", cider, flops[2]),
        ):
            _result(
                runs,
                "bart_base",
                method,
                task,
                0,
                {metric: score, "flops/lm_gflops_per_sample": gflops},
                "fig4_pooling",
                pool_size=pool,
            )
    _result(
        runs,
        "bart_base",
        "memvp",
        "vqav2",
        0,
        {"test/vqa_score": 0.6, "flops/lm_gflops_per_sample": 1.2},
        "fig4_pooling",
        pool_size=4,
    )  # one task of three: no point yet


def test_fig4_report_plots_average_score_against_flops(tmp_path):
    from memvp_lab.results.paper_table import plot_points
    from memvp_lab.results.records import load_runs

    runs = tmp_path / "runs"
    _fig4_runs(runs)
    assert main(["fig4_pooling", "--results", str(runs), "--out", str(tmp_path / "out")]) == 0
    png = tmp_path / "out" / "fig4_pooling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    markdown = (tmp_path / "out" / "fig4_pooling.md").read_text()
    assert "![" in markdown and "(fig4_pooling.png)" in markdown
    assert markdown.splitlines()[2].startswith("| method/pool_size | VQAv2 VQA score")
    assert "65.00 (n=1) [paper 65.3, -0.30]" in _row(markdown, "vl_pet/6")
    assert "55.00 (n=1) [paper 55.1, -0.10]" in _row(markdown, "memvp/null")
    assert "| vl_pet/2 | 60.00 (n=1) | 50.00 (n=1) | 105.00 (n=1) |" in markdown  # no paper value for it

    spec = paper_spec("fig4_pooling")
    points = plot_points(spec, build_table(spec, load_runs([runs], "fig4_pooling")))
    ours = {s: [(round(x, 4), round(y, 4), label) for x, y, label in p] for s, p in points["ours"].items()}
    assert ours == {
        "vl_pet": [(2.6667, 71.6667, "pool_size=2"), (5.6667, 79.6667, "pool_size=6")],
        "memvp": [(2.0333, 80.0, "pool_size=null")],
    }  # memvp/4 ran one task only: no point
    paper = {s: [(round(x, 4), round(y, 4), label) for x, y, label in p] for s, p in points["paper"].items()}
    assert paper == {
        "vl_pet": [(5.7, 79.8333, "pool_size=6")],
        "memvp": [(1.9333, 80.1667, "pool_size=null")],
    }  # Table 1's averages


def test_fig4_report_without_runs_still_draws_the_paper_points(tmp_path):
    assert main(["fig4_pooling", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "fig4_pooling.png").stat().st_size > 5_000
    assert "| memvp/1 | missing | missing |" in (tmp_path / "out" / "fig4_pooling.md").read_text()


class _FakeWandbRun:
    def __init__(self, summary: dict, config: dict) -> None:
        self.summary, self.config = summary, config


class _FakeWandbApi:
    """What ``wandb.Api().runs`` returns: runs with a summary and the uploaded config."""

    def __init__(self, runs: list[_FakeWandbRun]) -> None:
        self._runs, self.calls = runs, []

    def runs(self, path: str, filters: dict):
        self.calls.append((path, filters))
        return [r for r in self._runs if r.config.get("experiment_name") == filters["config.experiment_name"]]


def test_wandb_runs_fill_the_same_cells_as_local_results():
    config = {
        "experiment_name": "table1",
        "seed": 0,
        "backbone": {"name": "t5_base"},
        "method": {"name": "memvp"},
        "task": {"name": "gqa"},
    }
    api = _FakeWandbApi(
        [
            _FakeWandbRun({"test/accuracy": 0.561, "_step": 40, "_runtime": 3.0, "note": "text"}, config),
            _FakeWandbRun({"test/accuracy": 0.9}, {**config, "experiment_name": "table2"}),
        ]
    )
    runs = load_wandb_runs("team/memvp_lab", "table1", api=api)
    assert api.calls == [("team/memvp_lab", {"config.experiment_name": "table1"})]
    assert runs == [{"test/accuracy": 0.561, "config": config}]  # internal and non-numeric keys dropped
    rows = build_table(paper_spec("table1"), runs)
    gqa = rows["t5_base/memvp"][2]  # after #Trainable and VQAv2
    assert gqa.values == [pytest.approx(56.1)] and gqa.paper == 56.0


def test_report_names_the_vqa_rule_warns_on_mixed_versions_and_shows_failed_cells(tmp_path, capsys):
    runs = tmp_path / "runs"
    versions = {"transformers": "5.24.0", "torch": "2.14.1"}
    _result(
        runs,
        "bart_base",
        "memvp",
        "vqav2",
        0,
        {"status": "completed", "test/vqa_score": 0.65, "metric_rule": "vl_t5", "versions": versions},
    )
    _result(
        runs,
        "bart_base",
        "memvp",
        "vqav2",
        1,
        {
            "status": "completed",
            "test/vqa_score": 0.66,
            "metric_rule": "vl_t5",
            "versions": {**versions, "transformers": "5.25.0"},
        },
    )
    _result(
        runs,
        "bart_base",
        "lora",
        "vqav2",
        0,
        {"status": "failed", "error": "NonFiniteLossError: ...", "versions": versions},
    )
    assert main(["table1", "--results", str(runs), "--out", str(tmp_path / "out")]) == 1  # a failed cell
    assert "bart_base/lora / VQAv2 VQA score" in capsys.readouterr().err
    markdown = (tmp_path / "out" / "table1.md").read_text()
    assert "failed (n=1) [paper" in _row(markdown, "bart_base/lora")  # not "missing", never a score
    assert "missing [paper" in _row(markdown, "bart_base/vl_adapter")
    assert "- scored with the `vl_t5` VQA rule: VQAv2 VQA score\n" in markdown
    assert "- warning: runs made with different transformers versions: 5.24.0 (2 runs), 5.25.0 (1 run)" in markdown
    assert "torch versions" not in markdown
    rows = {(r["row"], r["column"]): r for r in csv.DictReader((tmp_path / "out" / "table1.csv").open())}
    assert rows[("bart_base/lora", "VQAv2 VQA score")]["failed"] == "1"
    assert rows[("bart_base/memvp", "VQAv2 VQA score")]["rule"] == "vl_t5"


def test_report_names_the_commits_of_its_runs_and_warns_about_uncommitted_code(tmp_path):
    runs = tmp_path / "runs"
    clean_a = {"sha": "4557e309be0ed1a30b6bc0962862e2b60bc63cdc", "dirty": False}
    clean_b = {"sha": "4ebbcbe0000000000000000000000000000000000", "dirty": False}
    for seed in (0, 1):
        _result(
            runs, "bart_base", "memvp", "vqav2", seed, {"status": "completed", "test/vqa_score": 0.6, "git": clean_a}
        )
    _result(runs, "bart_base", "memvp", "vqav2", 2, {"status": "completed", "test/vqa_score": 0.6, "git": clean_b})
    _result(runs, "bart_base", "lora", "vqav2", 0, {"status": "completed", "test/vqa_score": 0.5})  # no git record
    main(["table1", "--results", str(runs), "--out", str(tmp_path / "one")])
    markdown = (tmp_path / "one" / "table1.md").read_text()
    assert "- runs made at commits 4557e30 (2 runs), 4ebbcbe (1 run)\n" in markdown
    assert "uncommitted" not in markdown

    _result(
        runs,
        "bart_base",
        "lora",
        "vqav2",
        1,
        {"status": "completed", "test/vqa_score": 0.5, "git": {**clean_a, "dirty": True}},
    )
    main(["table1", "--results", str(runs), "--out", str(tmp_path / "two")])
    markdown = (tmp_path / "two" / "table1.md").read_text()
    assert "- runs made at commits 4557e30 (3 runs), 4ebbcbe (1 run)\n" in markdown
    assert "- warning: 1 run at 4557e30 had uncommitted changes: no commit holds the code they ran" in markdown


def test_report_names_the_thread_count_of_its_runs_and_warns_when_they_differ(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _result(runs, "bart_base", "memvp", "vqav2", seed, {"test/vqa_score": 0.6, "machine": {"torch_threads": 1}})
    _result(runs, "bart_base", "lora", "vqav2", 0, {"test/vqa_score": 0.5})  # no machine record: not counted
    main(["table1", "--results", str(runs), "--out", str(tmp_path / "one")])
    assert "- runs made with 1 torch thread (2 runs)\n" in (tmp_path / "one" / "table1.md").read_text()

    _result(runs, "bart_base", "lora", "vqav2", 1, {"test/vqa_score": 0.5, "machine": {"torch_threads": 2}})
    main(["table1", "--results", str(runs), "--out", str(tmp_path / "two")])
    markdown = (tmp_path / "two" / "table1.md").read_text()
    assert (
        "- warning: runs made with different torch thread counts: 1 (2 runs), 2 (1 run); a run repeats to the "
        "last digit only at its own thread count\n" in markdown
    )
    assert "runs made with 1 torch thread" not in markdown


def test_report_warns_when_a_column_mixes_vqa_rules(tmp_path):
    runs = tmp_path / "runs"
    for seed, rule in enumerate(("official", "vl_t5")):
        _result(runs, "bart_base", "memvp", "vqav2", seed, {"test/vqa_score": 0.65, "metric_rule": rule})
    assert main(["table1", "--results", str(runs), "--out", str(tmp_path / "out")]) == 0
    assert (
        "warning: VQAv2 VQA score mixes VQA rules ['official', 'vl_t5']" in (tmp_path / "out" / "table1.md").read_text()
    )
