"""Two CPU processes (DDP over gloo) against one process with the same global batch: step-by-step
parity, and negative controls showing the check catches a broken gradient average or sharding."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY_DATA
from memvp_lab.data.vqa import load_annotations
from memvp_lab.metrics import vqa_score

FAULTS = Path(__file__).parent / "ddp_faults"  # sitecustomize.py: faults for the negative controls
STEPS = 20
# Per-step training losses of 1 and 2 processes agree to this relative tolerance: the global batch
# holds the same 8 samples, only float reduction order differs (measured with
# `pytest tests/test_ddp.py`: at most 9e-8 over 20 steps, trained tensors within 8e-9; the negative
# controls differ by 2e-4 from step 1 and 2e-3 from step 0).
LOSS_RTOL = 1e-5
TENSOR_ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(
    trainer: str, batch_size: int, data_dir: Path, out: Path, fault: str | None = None, steps: int = STEPS
) -> Path:
    # method.eps=1: AdamW's update is nearly invariant to a constant factor on the gradient when
    # eps is tiny, so summed instead of averaged gradients would go unseen; with eps=1 it is not.
    args = [
        f"trainer={trainer}",
        "backbone=tiny_llama",
        "method.n=64",
        "method.lr=3e-2",
        "method.dropout=0",
        "method.eps=1.0",
        "method.warmup_steps=0",
        f"paths.data_dir={data_dir}",
        *TINY_DATA,
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.max_epochs=null",
        "trainer.check_val_every_n_epoch=null",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "callbacks.epoch_checkpoint=null",
        f"task.data.batch_size={batch_size}",
        "logger=csv",
        f"hydra.run.dir={out}",
    ]
    env = {**os.environ, "MASTER_PORT": str(_free_port()), "WANDB_MODE": "offline"}
    if fault:
        env.update(
            MEMVP_LAB_TEST_FAULT=fault, PYTHONPATH=os.pathsep.join(filter(None, [str(FAULTS), env.get("PYTHONPATH")]))
        )
    proc = subprocess.run(
        [sys.executable, "-m", "memvp_lab.train", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _losses(run: Path) -> dict[int, float]:
    rows = csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def differences(one: Path, two: Path) -> list[str]:
    """What differs between a 1-process and a 2-process run beyond float reduction order (``two``
    may be a shorter run: then its steps are compared, and its tensors and predictions are not)."""
    found = []
    a, b = _losses(one), _losses(two)
    if sorted(b) != sorted(a)[: len(b)] or len(a) != STEPS:
        found.append(f"logged steps differ: {sorted(a)} vs {sorted(b)}")
    bad = [s for s in a if s in b and abs(a[s] - b[s]) > LOSS_RTOL * abs(a[s])]
    if bad:
        found.append(f"losses differ from step {bad[0]}: {a[bad[0]]!r} vs {b[bad[0]]!r}")
    if len(b) < len(a):
        return found
    ta, tb = (load_file(str(r / "trainable" / "trainable.safetensors")) for r in (one, two))
    far = [k for k in ta if not torch.allclose(ta[k], tb[k], rtol=0, atol=TENSOR_ATOL)]
    if far:
        found.append(f"trained tensors differ: {far}")
    pa, pb = (
        sorted((p["question_id"], p["answer"]) for p in json.loads((r / "predictions_test.json").read_text()))
        for r in (one, two)
    )
    if pa != pb:
        found.append("test predictions differ")
    return found


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory) -> Path:
    return _run("cpu", 8, data_dir, tmp_path_factory.mktemp("ddp") / "one")


@pytest.mark.slow
def test_two_cpu_processes_match_one_step_by_step(one_process, data_dir, tmp_path):
    """Same global batch (2 x 4 = 8), dropout off: the same loss at every step, the same trained
    tensors and predictions; every test question is answered and scored once."""
    two = _run("ddp_cpu", 4, data_dir, tmp_path / "two")
    assert differences(one_process, two) == []
    results = json.loads((two / "results.json").read_text())
    dataset = next(data_dir.glob("shapes_vqa_*_train40_val20_test40"))
    questions = json.loads((dataset / "vqa" / "karpathy_test.json").read_text())
    references = load_annotations(dataset / "vqa" / "annotations.json")
    predictions = json.loads((two / "predictions_test.json").read_text())
    assert sorted(p["question_id"] for p in predictions) == sorted(q["question_id"] for q in questions)
    scores = [vqa_score(p["answer"], references[p["question_id"]]) for p in predictions]
    assert results["test/vqa_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
    assert results["test/vqa_score"] == json.loads((one_process / "results.json").read_text())["test/vqa_score"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, expected", [("sum_gradients", "losses differ from step 1"), ("same_shard", "losses differ from step 0")]
)
def test_parity_check_catches_a_broken_ddp(fault, expected, one_process, data_dir, tmp_path):
    """Negative controls: the same comparison fails when the ranks' gradients are summed instead
    of averaged, or when both ranks read the same shard."""
    broken = _run("ddp_cpu", 4, data_dir, tmp_path / fault, fault=fault, steps=4)  # both faults show by step 1
    found = differences(one_process, broken)
    assert found and found[0].startswith(expected), found


def test_each_rank_reads_its_half_of_every_global_batch():
    """Rank r's k-th batch of 4 and the other rank's together are the 1-process k-th batch of 8."""
    from memvp_lab.data.sampling import ResumableSampler

    data = list(range(50))
    whole = list(ResumableSampler(data, num_replicas=1, rank=0, seed=3))
    ranks = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(whole)
    for k in range(50 // 8):
        assert sorted(ranks[0][4 * k : 4 * k + 4] + ranks[1][4 * k : 4 * k + 4]) == sorted(whole[8 * k : 8 * k + 8])
