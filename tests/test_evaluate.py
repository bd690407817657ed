"""``python -m memvp_lab.evaluate``: a finished run's adapter-only checkpoint scores exactly what
the run scored, on any split, with task settings changed, and bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, make_config, tiny_overrides
from memvp_lab.errors import ConfigError
from memvp_lab.evaluate import evaluate, parse
from memvp_lab.train import train

pytestmark = pytest.mark.slow

TRAIN = (
    "threads=1",
    "trainer.max_steps=4",
    "callbacks.epoch_checkpoint=null",
    "method.lr=1e-2",
    "method.warmup_steps=0",
)


@pytest.fixture(scope="module", params=[("memvp", "tiny_llama"), ("vl_pet", "tiny_t5")], ids=lambda p: "-".join(p))
def run_dir(request, data_dir, tmp_path_factory) -> Path:
    method, backbone = request.param
    out = tmp_path_factory.mktemp(f"{method}_run")
    overrides = tiny_overrides(backbone, data_dir, f"method={method}", *TRAIN)
    if method != "memvp":
        overrides = [o for o in overrides if not o.startswith(("method.n=", "method.layers="))]
    train(make_config(overrides, out))
    return out


def _scores(metrics: dict, split: str) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(f"{split}/")}


def test_the_test_split_gives_the_runs_own_metrics_exactly(run_dir):
    record = json.loads((run_dir / "results.json").read_text())
    metrics = evaluate(run_dir, threads=1)
    expected = _scores(record, "test")
    assert expected and _scores(metrics, "test") == expected
    assert metrics["flops/lm_gflops_per_sample"] == record["flops/lm_gflops_per_sample"]
    out = run_dir / "evaluate" / "test"
    assert (out / "predictions_test.json").read_bytes() == (run_dir / "predictions_test.json").read_bytes()
    written = json.loads((out / "evaluation.json").read_text())
    assert written["metrics"] == metrics and written["split"] == "test" and written["overrides"] == []


def test_the_val_split_and_a_changed_task_setting(run_dir, tmp_path):
    val = evaluate(run_dir, split="val", out_dir=tmp_path / "val", threads=1)
    assert set(val) >= {"val/vqa_score"} and not _scores(val, "test")
    # The last validation during training scored the same tensors: its answers are these.
    predictions = json.loads((tmp_path / "val" / "predictions_val.json").read_text())
    assert predictions == json.loads((run_dir / "predictions_val.json").read_text())
    evaluate(run_dir, overrides=["task.generation.max_new_tokens=1"], out_dir=tmp_path / "short", threads=1)
    short = {
        a["question_id"]: a["answer"] for a in json.loads((tmp_path / "short" / "predictions_test.json").read_text())
    }
    full = {a["question_id"]: a["answer"] for a in json.loads((run_dir / "predictions_test.json").read_text())}
    # Greedy decoding: the one-token answer is where the run's own answer starts.
    assert short.keys() == full.keys() and all(full[q].startswith(short[q].strip()) for q in full)
    assert json.loads((tmp_path / "short" / "evaluation.json").read_text())["overrides"] == [
        "task.generation.max_new_tokens=1"
    ]


def test_the_command_as_a_user_types_it(run_dir, tmp_path):
    if run_dir.name.startswith("vl_pet"):
        pytest.skip("the command is typed once, on the MemVP run; the VL-PET run checks the same code in-process")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "memvp_lab.evaluate", f"run_dir={run_dir}", f"out_dir={out}", "threads=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert json.loads((out / "evaluation.json").read_text())["metrics"]["test/vqa_score"] == record["test/vqa_score"]
    bad = subprocess.run(
        [sys.executable, "-m", "memvp_lab.evaluate", f"run_dir={run_dir}", "method.n=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: method.n: a finished run's model is fixed; only task settings")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["split=test"], "run_dir=<run dir> is required"),
        (["run_dir=x", "threads=two"], "threads=two: expected a positive whole number"),
        (["run_dir=x", "beams=5"], "beams: not a setting"),
        (["run_dir=x", "backbone.name=y"], "backbone.name: a finished run's model is fixed"),
        (["run_dir"], "run_dir: expected key=value"),
    ],
)
def test_bad_arguments_name_what_to_fix(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(argv)


def test_bad_runs_and_overrides_name_what_to_fix(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="no results.json there"):
        evaluate(tmp_path)
    with pytest.raises(ConfigError, match="only task settings change"):
        evaluate(run_dir, overrides=["backbone.name=x"])
    with pytest.raises(ConfigError, match="task.generation.beams: the run's config has no such key"):
        evaluate(run_dir, overrides=["task.generation.beams=5"])
    with pytest.raises(ConfigError, match="split=train: expected one of test, val"):
        evaluate(run_dir, split="train")
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "NonFiniteLossError: nan"}))
    with pytest.raises(ConfigError, match="the run failed"):
        evaluate(failed)
