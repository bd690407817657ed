"""The paper reproductions in experiments/: every job of every sweep composes and validates, each
paper json names rows its sweeps produce and metrics runs really write, and the Makefile runs them."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from enum import Enum
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

import memvp_lab.train  # noqa: F401  (registers the resolvers a run's config uses)
from helpers import REPO, make_config
from memvp_lab.config.compose import compose_config
from memvp_lab.metrics.evaluators import CaptionEvaluator
from memvp_lab.paths import config_dir
from memvp_lab.results.paper_numbers import paper_spec, trainable_m
from memvp_lab.results.paper_table import row_key
from memvp_lab.results.records import write_results
from memvp_lab.training.factory import method_and_visual

pytestmark = pytest.mark.slow  # integration tier: every sweep composed, make targets run

EXPERIMENTS = REPO / "experiments"
NAMES = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
PAPER_FILES = {p.name.removesuffix(".paper.json"): json.loads(p.read_text()) for p in EXPERIMENTS.glob("*.paper.json")}
REPORTS = sorted(name for name, spec in PAPER_FILES.items() if "study" not in spec)  # tables of runs
STUDY_FILES = sorted(name for name, spec in PAPER_FILES.items() if "study" in spec)  # figures' statements
NO_PAPER_JSON: set[str] = set()  # experiments without paper numbers (none today)
# Metrics every run writes besides its task's scores (train.py, training/callbacks.py, training/lit_module.py).
RUN_KEYS = {
    "params/trainable",
    "params/total",
    "flops/lm_gflops_per_sample",
    "flops/visual_gflops_per_sample",
    "time/train_s_per_step",
    "time/eval_s_per_batch",
    "memory/peak_rss_gb",
    "memory/peak_cuda_gb",
}
RUN_KEY_SOURCES = ("train.py", "training/callbacks.py", "training/lit_module.py")


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The overrides of every job ``python -m memvp_lab.train -m experiment=<experiment>`` launches,
    expanded by Hydra's basic sweeper from the file's ``hydra.sweeper.params``."""
    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [[f"experiment={experiment}", *job] for job in jobs]


@functools.lru_cache(maxsize=None)
def composed(experiment: str, root: str) -> tuple[tuple[tuple[str, ...], dict], ...]:
    """(overrides, the config as results.json records it) of every job of ``experiment``'s sweep."""
    out = []
    for i, job in enumerate(sweep_jobs(experiment)):
        cfg = make_config(job, output_dir=Path(root) / experiment / str(i))
        method_and_visual(cfg)  # the start-up checks of a real run: raises ConfigError naming the key
        path = Path(cfg.paths.output_dir) / "results.json"
        write_results(path, {}, cfg)
        out.append((tuple(job), json.loads(path.read_text())["config"]))
    return tuple(out)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("experiments"))


def runs_name(report: str) -> str:
    return paper_spec(report).get("experiment_name", report)


def feeding(report: str, root: str) -> list[str]:
    """The experiment files whose runs fill ``report``'s table."""
    return [n for n in NAMES if composed(n, root)[0][1]["experiment_name"] == runs_name(report)]


def _value(value) -> str:
    value = value.value if isinstance(value, Enum) else value
    return "null" if value is None else str(value)


# Jobs per sweep: the product of its swept values (a changed sweep must change this table too).
JOBS = {
    "adem_vl_table6": 5 * 3,  # ADEM-VL's five cumulative rows x seeds
    "adem_vl_table1": 2 * 3,  # LLaMA-7B/13B x ADEM-VL, MemVP, LLaVA-LoRA, seed 0
    "adem_vl_coco": 2,  # LLaMA-13B, 7B
    "demo_seeds": 2 * 3,
    "mini_compare": 4 * 3,  # MemVP, ADEM-VL, VLoRA, LLaVA-LoRA x seeds
    "mini_compare_lr": 4 * 4,  # the same methods x learning rates, seed 0
    "demo_seeds_llava": 3,  # seeds 0-2
    "fig4_pooling": 5 * 3,  # pooled sizes x VQAv2/GQA/COCO, seed 0
    "fig4_pooling_memvp": 5 * 3,
    "mini_table3": 2 * 3,  # MemVP, LLaVA-LoRA x seeds
    "mini_table4": 6 * 3,  # Table 4's six rows x seeds
    "table1": 6 * 2 * 3 * 3,  # methods x BART/T5 x VQAv2/GQA/COCO x seeds
    "table2": 2 * 2,  # LLaMA-7B/13B x MemVP, LLaVA-LoRA, seed 0
    "table3": 2 * 2,  # table2's runs (Table 3 reports their cost)
    "table4": 6,  # Table 4's six rows, seed 0
    "table8": 3 * 2 * 3,  # LoRA, VL-Adapter, VL-PET x TVQA/How2QA x seeds
    "table8_memvp": 2 * 3,
}


def test_every_sweep_has_a_job_count():
    assert sorted(JOBS) == NAMES


@pytest.mark.parametrize("experiment", NAMES)
def test_every_job_of_every_sweep_composes_validates_and_sets_its_overrides(experiment, root):
    jobs = composed(experiment, root)
    assert len(jobs) == JOBS[experiment]
    for job, config in jobs:
        cfg = OmegaConf.create(config)
        assert config["experiment_name"], job
        for override in job[1:]:
            key, value = override.split("=", 1)
            if (config_dir() / key).is_dir():  # a config group: the chosen file names itself
                assert config[key]["name"] == value, override
            else:
                assert _value(OmegaConf.select(cfg, key)) == value, override
    # Sweeps never run one job twice (each job writes its own run folder).
    assert len({job for job, _ in jobs}) == len(jobs)


@pytest.mark.parametrize("experiment", NAMES)
def test_every_experiment_file_says_how_to_run_and_report_it(experiment, root):
    text = (EXPERIMENTS / f"{experiment}.yaml").read_text()
    lines = [l for l in text.splitlines() if not l.startswith("# @package")]
    assert lines[0].startswith("# ") and len(lines[0]) <= 100
    comments = [l for l in lines if l.startswith("#")]
    assert any(f"python -m memvp_lab.train -m experiment={experiment}" in l for l in comments)
    reports = [r for r in REPORTS if experiment in feeding(r, root)]
    assert reports or experiment in NO_PAPER_JSON
    for report in [experiment] if experiment in REPORTS else reports:  # its own table, else those it joins
        assert any(f"python -m memvp_lab.report {report}" in l for l in comments), report


def test_every_study_reads_its_paper_numbers_from_a_paper_file():
    """Studies hold no numbers of the paper: their ``paper`` block names a file and a row pattern,
    and the ratios the study prints come from that file."""
    from memvp_lab.results.paper_numbers import study_points, study_reference

    studies = {p.stem: OmegaConf.load(p) for p in (REPO / "conf" / "study").glob("*.yaml")}
    pointed = {name: study.paper for name, study in studies.items() if study.get("paper")}
    assert {n: p if isinstance(p, str) else p.table for n, p in pointed.items()} == {
        "table1_flops": "table1",
        "fig2_text_length": "fig2_text_length",
        "fig4_left": "fig4_left",
        "table3_llama7b_shape": "table3",
        "table3_smollm2": "table3",
    }
    assert {s: PAPER_FILES[s]["study"] for s in STUDY_FILES} == {s: s for s in STUDY_FILES}
    assert set(STUDY_FILES) <= set(studies)
    from memvp_lab.benchmark.compare import PAPER_METRICS

    table3 = study_reference(pointed["table3_smollm2"], ["memvp", "llava_lora"], "llava_lora", PAPER_METRICS)
    assert table3 == {"memvp": {"time/train_s_per_step": 0.28 / 0.49, "time/eval_s_per_batch": 1.88 / 3.42}}
    fig4 = study_reference(pointed["fig4_left"], ["memvp", "vl_pet", "lora"], "vl_pet", PAPER_METRICS)
    assert fig4 == {
        "memvp": {"time/train_s_per_step": 0.588, "time/eval_s_per_batch": 0.714, "memory/peak_cuda_gb": 0.56}
    }
    assert study_points(pointed["fig2_text_length"]) == {"64": {"train_ratio": 2.6, "inference_ratio": 4.8}}
    for study in STUDY_FILES:
        spec = PAPER_FILES[study]
        assert spec["title"] and spec["notes"] and all(len(v) == len(spec["columns"]) for v in spec["cells"].values())


@pytest.mark.parametrize("report", REPORTS)
def test_paper_json_is_well_formed(report):
    spec = json.loads((EXPERIMENTS / f"{report}.paper.json").read_text())
    assert spec["title"] and spec["rows"] and spec["cells"]
    for column in spec["columns"]:
        assert set(column) - {"decimals"} == {"task", "metric", "label", "scale"}, column
        assert column["scale"] in (1, 100, 1e-6)
        assert ("decimals" in column) == (
            column["metric"] == "params/trainable" and report in ("table1", "table2", "adem_vl_table1", "adem_vl_coco")
        )
    assert len({c["label"] for c in spec["columns"]}) == len(spec["columns"])
    for key, values in spec["cells"].items():
        assert len(key.split("/")) == len(spec["rows"]), key
        assert len(values) == len(spec["columns"]), key
        assert all(v is None or isinstance(v, (int, float)) for v in values), key
    has_numbers = any(v is not None for values in spec["cells"].values() for v in values)
    assert has_numbers != bool(spec.get("without_paper"))  # a table of our own runs only says so
    if "plot" in spec:
        metrics = {c["metric"] for c in spec["columns"]}
        for axis in ("x", "y"):
            assert set([spec["plot"][axis]] if isinstance(spec["plot"][axis], str) else spec["plot"][axis]) <= metrics
        assert spec["plot"]["series"] in spec["rows"]


@pytest.mark.parametrize("report", REPORTS)
def test_paper_rows_are_exactly_the_rows_the_sweeps_produce(report, root):
    spec = paper_spec(report)
    experiments = feeding(report, root)
    assert experiments, f"no experiment file runs {runs_name(report)!r}"
    configs = [config for e in experiments for _, config in composed(e, root)]
    produced = {row_key({"config": c}, spec["rows"]) for c in configs}
    assert produced == set(spec["cells"])
    tasks = {c["task"]["name"] for c in configs}
    assert {column["task"] for column in spec["columns"]} == tasks


def _task_metric_keys(task: str, split: str = "test") -> set[str]:
    evaluator = _evaluator(task)
    if isinstance(evaluator, CaptionEvaluator):  # sibling metrics: test/cider, test/bleu4, ...
        return {f"{split}/{k}" for k in (evaluator.primary, *evaluator.breakdown)}
    return {f"{split}/{evaluator.primary}", *(f"{split}/{evaluator.primary}/{b}" for b in evaluator.breakdown)}


@functools.cache  # composing a task's config is the slow part; columns share tasks
def _evaluator(task: str):
    return instantiate(make_config([f"task={task}"]).task.evaluator)


def test_paper_columns_name_metrics_runs_write():
    sources = "\n".join((REPO / "src" / "memvp_lab" / f).read_text() for f in RUN_KEY_SOURCES)
    assert all(f'"{key}"' in sources for key in RUN_KEYS)
    for report in REPORTS:
        for column in paper_spec(report)["columns"]:
            # results.json holds the test metrics and those of the last validation
            known = RUN_KEYS | _task_metric_keys(column["task"]) | _task_metric_keys(column["task"], "val")
            assert column["metric"] in known, (report, column)
    assert _task_metric_keys("scienceqa") == {
        "test/accuracy",
        *(f"test/accuracy/{c}" for c in ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12")),
    }


def _column(report: str, label: str) -> dict[str, float | None]:
    spec = paper_spec(report)
    i = [c["label"] for c in spec["columns"]].index(label)
    return {key: values[i] for key, values in spec["cells"].items()}


def test_paper_numbers_agree_across_tables():
    # #Trainable as printed in Tables 1 and 2 (trainable_m, checked against our counts by test_params).
    printed = trainable_m()
    assert printed["bart_base"]["memvp"] == 3.78 and printed["t5_base"]["full_ft"] == 224.54
    assert printed["llama_7b"] == {"memvp": 3.9, "llava_lora": 4.4} and printed["llama_13b"] == {"memvp": 5.5}
    for key, value in _column("table3", "#Trainable (M)").items():
        backbone, method = key.split("/")
        assert value == printed[backbone].get(method), key
    assert _column("table4", "#Trainable (M)")["none"] == printed["llama_7b"]["memvp"]
    # Table 3's accuracy column is Table 2's average; Table 4's first row is Table 2's MemVP 7B.
    assert _column("table3", "Accuracy (Table 2)") == _column("table2", "Average")
    assert _column("table4", "Average")["none"] == _column("table2", "Average")["llama_7b/memvp"] == 93.07
    assert _column("table4", "IMG")["none"] == _column("table2", "IMG")["llama_7b/memvp"] == 92.36
    # Fig. 4's only numbers are Table 1's BART-base rows of the same setting.
    table1, fig4 = paper_spec("table1")["cells"], paper_spec("fig4_pooling")["cells"]
    assert [c["label"] for c in paper_spec("table1")["columns"][1:]] == [
        c["label"] for c in paper_spec("fig4_pooling")["columns"]
    ]
    assert fig4["vl_pet/6"] == table1["bart_base/vl_pet"][1:] and fig4["memvp/null"] == table1["bart_base/memvp"][1:]
    assert sum(v is not None for values in fig4.values() for v in values) == 12
    # Table 2: the paper's average is the accuracy over all categories, not their mean; spot values.
    assert _column("table2", "G7-12") == {
        "llama_7b/memvp": 93.01,
        "llama_7b/llava_lora": 89.65,
        "llama_13b/memvp": 94.07,
        "llama_13b/llava_lora": None,
    }
    assert _column("table8", "How2QA Acc") == {"lora": 69.4, "vl_adapter": 68.6, "vl_pet": 69.1, "memvp": 70.7}


def test_llama_experiments_follow_paper_table7(root):
    for experiment in ("table2", "table4"):
        for job, config in composed(experiment, root):
            method, data, trainer = config["method"], config["task"]["data"], config["trainer"]
            assert data["batch_size"] * trainer["devices"] * trainer["accumulate_grad_batches"] == 32, job
            assert trainer["max_epochs"] == 20 and method["lr"] == pytest.approx(9e-3 * 32 / 256), job
            assert config["vision"]["name"] == "clip_vit_l14" and config["task"]["name"] == "scienceqa"
            if method["name"] == "memvp":
                assert method["lam"] == 0.01
                assert method["n"] == {"llama_7b": 320, "llama_13b": 400}[config["backbone"]["name"]]
            else:
                assert (method["name"], method["r"]) == ("llava_lora", 6)

    # Table 3 is Table 2's sweep: the same jobs, the same configs (but for this test's run folders).
    def configs(experiment):
        return [json.dumps(c).replace(f"{root}/{experiment}/", "<run dir>/") for _, c in composed(experiment, root)]

    assert configs("table3") == configs("table2") and '"experiment_name": "table2"' in configs("table3")[0]


def test_bart_experiments_follow_paper_table5(root):
    for experiment, batch in (("table8", 64), ("table8_memvp", 64), ("fig4_pooling", 512), ("fig4_pooling_memvp", 512)):
        for job, config in composed(experiment, root):
            assert config["backbone"]["name"] == "bart_base" and config["trainer"]["max_epochs"] == 20, job
            assert config["task"]["data"]["batch_size"] == batch and config["method"]["lr"] == 1e-3, job
            if config["method"]["name"] == "memvp":
                assert (config["method"]["n"], config["method"]["lam"]) == (240, 0.01)
    pools = {
        (
            c["method"]["name"],
            c["pool_size"],
            c["method"].get("pool_size", c["method"].get("prompt", {}).get("pool_size")),
        )
        for e in ("fig4_pooling", "fig4_pooling_memvp")
        for _, c in composed(e, root)
    }
    assert pools == {(m, p, p) for m in ("vl_pet", "memvp") for p in (1, 2, 4, 6, None)}


def _make_targets() -> dict[str, tuple[str, list[str]]]:
    """``target: (help text, recipe lines)`` of the Makefile."""
    targets, current = {}, None
    for line in (REPO / "Makefile").read_text().splitlines():
        if m := re.match(r"^([a-zA-Z0-9_-]+):.*?## (.+)$", line):
            current = m.group(1)
            targets[current] = (m.group(2), [])
        elif line.startswith("\t") and current:
            targets[current][1].append(line.strip())
        elif not line.strip():
            current = None
    return targets


MAKE_TARGETS = {
    "table-1": "table1",
    "table-2": "table2",
    "table-3": "table3",
    "table-4": "table4",
    "table-8": "table8",
    "fig-4": "fig4_pooling",
    "mini-table-3": "mini_table3",
    "mini-table-4": "mini_table4",
    "adem-vl-table-6": "adem_vl_table6",
    "mini-compare-lr": "mini_compare_lr",
    "mini-compare": "mini_compare",
}
FAKE_PYTHON = """#!/bin/bash
echo "$*" >> "$CALLS"
case "$*" in *memvp_lab.train*"experiment=$FAIL"*) exit 1;; esac
"""


def _make(target: str, tmp_path: Path, fail: str = "none") -> tuple[int, list[str]]:
    """Runs a make target with a stand-in for the venv's python that records its calls and fails
    the sweep of experiment ``fail``; returns make's exit code and the calls."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.setup-complete", target, f"PY={fake}", "ARGS=seed=7"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "CALLS": str(calls), "FAIL": fail},
    )
    return proc.returncode, calls.read_text().splitlines()


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_targets_run_every_cell_then_report(target, root, tmp_path):
    report = MAKE_TARGETS[target]
    phony = next(l for l in (REPO / "Makefile").read_text().splitlines() if l.startswith(".PHONY:")).split()
    assert f"reproduce-{target}" in phony and f"report-{target}" in phony
    assert _make_targets()[f"report-{target}"][1] == [f"$(PY) -m memvp_lab.report {report}"]
    code, calls = _make(f"reproduce-{target}", tmp_path)
    assert code == 0 and calls[-1] == f"-m memvp_lab.report {report}"
    run = [re.fullmatch(r"-m memvp_lab\.train -m experiment=(\S+) seed=7", c).group(1) for c in calls[:-1]]
    spec = paper_spec(report)
    produced = {row_key({"config": c}, spec["rows"]) for e in run for _, c in composed(e, root)}
    assert produced == set(spec["cells"])  # the recipe runs every row of the table


def test_demo_seeds_runs_memvp_and_llava_lora_over_three_seeds_then_reports(root, tmp_path):
    code, calls = _make("demo-seeds", tmp_path)
    assert code == 0 and calls[-1] == "-m memvp_lab.report demo_seeds"
    jobs = [c for e in ("demo_seeds", "demo_seeds_llava") for _, c in composed(e, root)]
    cells = {(c["method"]["name"], c["method"].get("ablation"), c["seed"]) for c in jobs}
    assert cells == {
        (m, a, s) for m, a in (("memvp", "none"), ("memvp", "no_visual"), ("llava_lora", None)) for s in (0, 1, 2)
    }
    assert all(c["experiment_name"] == "demo_seeds" and c["trainer"]["max_steps"] == 1440 for c in jobs)


def test_make_target_reports_after_a_failed_sweep_and_fails(tmp_path):
    """A failing sweep does not stop the next sweep or the report; make exits non-zero at the end."""
    code, calls = _make("reproduce-table-8", tmp_path, fail="table8")
    assert code != 0
    assert calls == [
        "-m memvp_lab.train -m experiment=table8 seed=7",
        "-m memvp_lab.train -m experiment=table8_memvp seed=7",
        "-m memvp_lab.report table8",
    ]


def test_adem_vl_table6_rows_turn_on_one_ingredient_each(root):
    """Each row adds one ingredient to the one before (paper Table VI), and the method settings
    follow the row's name."""
    settings = {}
    for _, config in composed("adem_vl_table6", root):
        m = config["method"]
        settings[config["step"]] = (tuple(m["pool_sizes"]), m["cls_token"], m["similarity"], m["gamma"])
    assert settings == {
        "baseline": ((None,), "none", "act_product", 0.0),
        "cls": ((None,), "mean", "act_product", 0.0),
        "xattn": ((None,), "mean", "silu_both", 0.0),
        "multiscale": ((None, "half"), "mean", "silu_both", 0.0),
        "fusion": ((None, "half"), "mean", "silu_both", 0.1),
    }


def test_mini_compare_trains_each_method_at_the_rate_its_search_chose(root):
    """mini_compare's rates are the ones its learning-rate search swept, one per swept method, and
    every job trains at its method's rate (not at the method's embedded-default rate)."""
    spec = OmegaConf.load(EXPERIMENTS / "mini_compare.yaml")
    search = OmegaConf.load(EXPERIMENTS / "mini_compare_lr.yaml").hydra.sweeper.params
    searched = {float(r) for r in str(search["method.lr"]).split(",")}
    chosen = dict(spec.lr_by_method)
    assert (
        sorted(chosen)
        == sorted(str(search.method).split(","))
        == sorted(str(spec.hydra.sweeper.params.method).split(","))
    )
    assert set(chosen.values()) <= searched
    for _, config in composed("mini_compare", root):
        assert config["method"]["lr"] == chosen[config["method"]["name"]]
    # The map decides the rate (its values happen to equal some methods' default rates).
    cfg = make_config(["experiment=mini_compare", "method=vlora", "lr_by_method.vlora=0.0003"], output_dir=Path(root))
    assert cfg.method.lr == 0.0003
