"""The same command with the same seed gives the same numbers, whether the run had to prepare its
inputs (generate data, extract features, convert weights) or found them cached; test sets do not
move when the training set changes size; a NaN loss stops a run and is recorded as a failure."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig

from helpers import REPO, TINY_DATA, make_config, tiny_overrides
from memvp_lab.data import shapes_vqa
from memvp_lab.errors import NonFiniteLossError
from memvp_lab.model.flops import MemorySpec, analytic_lm_flops
from memvp_lab.train import train

pytestmark = pytest.mark.slow  # integration tier: whole runs compared


def training_losses(run_dir: Path) -> dict[int, str]:
    """Per-step training losses as logged (strings: compared digit for digit)."""
    rows = csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open())
    return {int(row["step"]): row["train/loss"] for row in rows if row.get("train/loss")}


def scores(run_dir: Path) -> dict[str, float]:
    record = json.loads((run_dir / "results.json").read_text())
    return {k: v for k, v in record.items() if k.startswith(("test/", "val/"))}


# One backbone each method runs on, covering every method and all three families.
METHOD_CASES = [
    ("memvp", "tiny_llama"),
    ("lora", "tiny_t5"),
    ("vl_adapter", "tiny_bart"),
    ("compacter", "tiny_t5"),
    ("vl_pet", "tiny_t5"),
    ("full_ft", "tiny_bart"),
    ("llava_lora", "tiny_llama"),
]


@pytest.mark.parametrize("method,backbone", METHOD_CASES, ids=lambda x: str(x))
def test_first_run_equals_a_run_on_prepared_data(method, backbone, tmp_path):
    """The first run generates the dataset and extracts features (with a randomly initialised
    encoder); the second finds both. Losses, predictions and scores agree exactly."""
    data = tmp_path / "data"
    runs = []
    for name in ("first", "cached"):
        out = tmp_path / name
        overrides = [
            f"method={method}",
            f"backbone={backbone}",
            "trainer=debug",
            "trainer.max_steps=6",
            "logger=csv",
            f"paths.data_dir={data}",
            *TINY_DATA,
        ]
        train(make_config(overrides, out))
        runs.append(out)
    first, cached = runs
    assert training_losses(first) and training_losses(first) == training_losses(cached)
    assert (first / "predictions_test.json").read_bytes() == (cached / "predictions_test.json").read_bytes()
    assert scores(first) == scores(cached)


def test_real_default_first_run_equals_later_run(tmp_path):
    """`python -m memvp_lab.train` on an empty data folder and an empty model cache (it generates,
    extracts and converts SmolLM2), then again on the filled ones: identical numbers. Before the
    conversion ran on its own random streams, the first run trained differently. The run is the
    default as shipped: its model, trainable count and measured FLOPs are checked too."""
    env = {**os.environ, "MEMVP_LAB_DATA": str(tmp_path / "data"), "MEMVP_LAB_CACHE": str(tmp_path / "cache")}
    short = [
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "trainer.limit_test_batches=1",
        "task.data.num_train_images=60",
        "task.data.num_val_questions=10",
        "task.data.num_test_questions=64",
        "logger=csv",
        "flops_samples=1",
        "save_trainable=false",
    ]
    for name in ("first", "later"):
        subprocess.run(
            [sys.executable, "-m", "memvp_lab.train", *short, f"hydra.run.dir={tmp_path / name}"],
            check=True,
            cwd=REPO,
            env=env,
            capture_output=True,
        )
    first, later = tmp_path / "first", tmp_path / "later"
    assert len(training_losses(first)) == 8 and training_losses(first) == training_losses(later)
    assert (first / "predictions_test.json").read_bytes() == (later / "predictions_test.json").read_bytes()
    assert scores(first) == scores(later)

    # The default as shipped: its model, parameter counts and measured FLOPs.
    results = json.loads((first / "results.json").read_text())
    config = results["config"]
    assert (config["backbone"]["name"], config["vision"]["name"], config["method"]["name"]) == (
        "smollm2_135m",
        "efficientnet_lite0",
        "memvp",
    )
    assert results["params/trainable"] == 312_000  # 2 x 64 x 576 + (1280x128+128) + (128x576+576)
    assert results["params/total"] == 134_515_008 + 312_000
    # Shapes prompts are 8-14 tokens and answers 2 (word + <|im_end|>): the measured per-sample
    # FLOPs lie between the analytic counts of the shortest and the longest sample.
    smollm2 = AutoConfig.from_pretrained(tmp_path / "cache" / "smollm2-135m-instruct")
    memory = MemorySpec(slots=64, decoder_sites=10)  # memory in FFNs 20-29 (layers 0-19 cached, still counted)
    low, high = (analytic_lm_flops(smollm2, p, 2, memory) / 1e9 for p in (8, 14))
    assert low <= results["flops/lm_gflops_per_sample"] <= high


def test_test_split_does_not_depend_on_the_training_set(tmp_path):
    """Each split draws from its own stream and numbers its own questions: a larger training set
    leaves the test (and validation) files and images byte-identical."""
    roots = [shapes_vqa.generate(tmp_path, shapes_vqa.ShapesVQASpec(3, n, 20, 30)) for n in (10, 25)]
    small, large = roots
    assert (small / "vqa" / "karpathy_train.json").read_bytes() != (large / "vqa" / "karpathy_train.json").read_bytes()
    for name in ("karpathy_val.json", "karpathy_test.json", "annotations.json"):
        assert (small / "vqa" / name).read_bytes() == (large / "vqa" / name).read_bytes(), name
    test_images = sorted(p.name for p in (small / "images").glob("shapes_test_*.jpg"))
    assert len(test_images) == 60  # max(60, 30 // 2) images to draw 30 questions from
    for name in test_images:
        assert (small / "images" / name).read_bytes() == (large / "images" / name).read_bytes()
    test = json.loads((small / "vqa" / "karpathy_test.json").read_text())
    assert len(test) == 30 and min(q["question_id"] for q in test) > shapes_vqa.QUESTION_ID_OFFSET["test"]
    # another seed gives another test set
    other = shapes_vqa.generate(tmp_path, shapes_vqa.ShapesVQASpec(4, 10, 20, 30))
    assert (other / "vqa" / "karpathy_test.json").read_bytes() != (small / "vqa" / "karpathy_test.json").read_bytes()


def test_features_are_keyed_by_the_extractor_settings(data_dir):
    """A changed extractor setting names another features file instead of reusing stale ones."""
    from memvp_lab.data.shapes_datamodule import extractor_key

    base = make_config(tiny_overrides("tiny_llama", data_dir))
    other = make_config(tiny_overrides("tiny_llama", data_dir, "vision.encoder.out_index=2"))
    assert extractor_key(base.vision) == extractor_key(make_config(tiny_overrides("tiny_llama", data_dir)).vision)
    assert extractor_key(base.vision) != extractor_key(other.vision)


def test_nan_loss_stops_the_run_and_is_recorded(data_dir, tmp_path):
    cfg = make_config(
        tiny_overrides(
            "tiny_llama",
            data_dir,
            "method.lr=1e12",
            "method.warmup_steps=0",
            "trainer.max_steps=30",
            "callbacks.step_checkpoint.every_n_train_steps=1",
        ),
        tmp_path,
    )
    earlier = json.dumps({"status": "completed", "test/vqa_score": 0.5})  # a finished run in the same folder
    (tmp_path / "results.json").write_text(earlier)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf|-inf) at optimizer step (\d+)") as err:
        train(cfg)
    step = int(err.value.args[0].split("optimizer step ")[1].split()[0])
    assert 0 < step < 30
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("NonFiniteLossError: ")
    assert record["failed_at_step"] == step
    assert not any(k.startswith(("test/", "val/")) for k in record)  # never a score
    assert (tmp_path / "results.previous.json").read_text() == earlier  # kept, not overwritten
    # the newest checkpoint is the last good state: written after step - 1, before the bad step
    import torch

    last = torch.load(record["last_checkpoint"], weights_only=True)
    assert last["global_step"] == step
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_deterministic_switch_runs_and_changes_nothing_on_cpu(data_dir, tmp_path):
    """trainer.deterministic=true (deterministic kernels only) trains every op of a MemVP run and
    gives the numbers of a default run: on the CPU they are deterministic already."""
    import torch

    runs = []
    try:
        for name, switch in (
            ("default", "trainer.deterministic=null"),
            ("deterministic", "trainer.deterministic=true"),
        ):
            out = tmp_path / name
            train(make_config(tiny_overrides("tiny_llama", data_dir, switch), out))
            runs.append(out)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: leave later tests as they were
    assert training_losses(runs[0]) == training_losses(runs[1])
    assert scores(runs[0]) == scores(runs[1])


def test_isolated_rng_neither_reads_nor_advances_the_global_streams():
    import random

    import numpy as np
    import torch

    from memvp_lab.rng import isolated_rng

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = draw()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    with isolated_rng():
        inside = draw()
    assert draw() == expected  # the global streams continue as if the block had not run
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    with isolated_rng():
        assert draw() == inside  # inside: its own seed, whatever the global state was
