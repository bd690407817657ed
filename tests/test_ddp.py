"""Two CPU processes (DDP over gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_DATA
from memvp_lab.data.vqa import load_annotations
from memvp_lab.metrics import vqa_score

# Tolerance on the test VQA score between 1 and 2 processes: the shards see the same samples in
# another order, so the weights differ slightly; what the model learns in 60 steps (the answer
# prior per question type) must not.
TOLERANCE = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(trainer: str, batch_size: int, data_dir: Path, out: Path) -> dict:
    args = [f"trainer={trainer}", "backbone=tiny_llama", "method.n=64", "method.lr=3e-2", "method.dropout=0",
            f"paths.data_dir={data_dir}", *TINY_DATA, "trainer.max_steps=60", "trainer.val_check_interval=60",
            "trainer.limit_val_batches=1", "trainer.log_every_n_steps=5", "trainer.enable_progress_bar=false",
            f"task.data.batch_size={batch_size}", "logger=csv", "save_trainable=false", f"hydra.run.dir={out}"]
    env = {**os.environ, "MASTER_PORT": str(_free_port()), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "memvp_lab.train", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_match_one_and_count_each_question_once(data_dir, tmp_path):
    one = _run("cpu", 8, data_dir, tmp_path / "one")
    two = _run("ddp_cpu", 4, data_dir, tmp_path / "two")  # 2 x 4 = the same global batch of 8
    assert abs(one["test/vqa_score"] - two["test/vqa_score"]) <= TOLERANCE

    # Every test question is answered once, and the logged score is the mean over exactly those.
    dataset = next(data_dir.glob("shapes_vqa_*_train40_val20_test40"))
    questions = json.loads((dataset / "vqa" / "karpathy_test.json").read_text())
    references = load_annotations(dataset / "vqa" / "annotations.json")
    predictions = json.loads((tmp_path / "two" / "predictions_test.json").read_text())
    assert sorted(p["question_id"] for p in predictions) == sorted(q["question_id"] for q in questions)
    scores = [vqa_score(p["answer"], references[p["question_id"]]) for p in predictions]
    assert two["test/vqa_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
    assert 0.0 < two["test/vqa_score"]  # the per-question scores differ, so a duplicate would show
