"""Checkpoints hold only what trains; a killed run resumes to exactly the uninterrupted result."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_config, tiny_overrides
from memvp_lab.data.sampling import EpochKeyedDataset, ResumableSampler
from memvp_lab.errors import CheckpointMismatch, ConfigError
from memvp_lab.train import train
from memvp_lab.training.runs import latest_checkpoint

pytestmark = pytest.mark.slow  # integration tier: training killed and resumed


class _Draws(torch.utils.data.Dataset):
    """Each item is a draw from Python's global ``random`` (like a sampled reference answer)."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i, random.random()


def test_sampler_resumes_inside_an_epoch_and_shards_processes():
    data = _Draws()
    full = ResumableSampler(data, seed=3)
    full.set_epoch(2)
    order = list(full)
    assert sorted(k - 2 * len(data) for k in order) == list(range(10))  # keys encode (epoch, index)
    resumed = ResumableSampler(data, seed=3)
    resumed.resume(2, 4)
    resumed.set_epoch(2)
    assert list(resumed) == order[4:]
    resumed.set_epoch(3)
    assert len(list(resumed)) == 10  # the skip applies to the resumed epoch only
    shards = [ResumableSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for s in shards:
        s.set_epoch(2)
    assert sorted(list(shards[0]) + list(shards[1])) == sorted(order)
    with pytest.raises(ValueError, match="cannot resume after 11 samples"):
        ResumableSampler(data).resume(0, 11)


def test_sample_draws_depend_on_seed_epoch_and_index_only():
    keyed = EpochKeyedDataset(_Draws(), seed=5)
    random.seed(1)
    first = keyed[13]  # epoch 1, index 3
    random.seed(2)
    assert keyed[13] == first
    assert keyed[3] != first and EpochKeyedDataset(_Draws(), seed=6)[13] != first
    state = random.getstate()
    keyed[0]
    assert random.getstate() == state  # the global generator is left as it was


def test_checkpoints_hold_only_trainable_tensors_and_training_state(data_dir, tmp_path):
    train(
        make_config(
            tiny_overrides(
                "tiny_llama", data_dir, "trainer.max_steps=5", "callbacks.step_checkpoint.every_n_train_steps=3"
            ),
            tmp_path,
        )
    )
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names[-2:] == ["last.ckpt", "latest-step.ckpt"] and any(n.startswith("epoch=") for n in names)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = load_file(tmp_path / "trainable" / "trainable.safetensors")
    assert sorted(ckpt["state_dict"]) == sorted(f"model.{k}" for k in trained)
    for name, tensor in trained.items():
        assert torch.equal(ckpt["state_dict"][f"model.{name}"], tensor)
    assert ckpt["global_step"] == 5
    (adam,) = ckpt["optimizer_states"]
    assert len(adam["state"]) == len(trained)  # moments for the trainable tensors only
    assert set(ckpt["memvp_lab"]["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["memvp_lab"]["data_position"] == {"epoch": 0, "batches": 5}


def test_resume_names_what_is_wrong(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="resume=.*no such run folder"):
        train(make_config(tiny_overrides("tiny_llama", data_dir, f"resume={tmp_path / 'nowhere'}"), tmp_path / "a"))
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no loadable checkpoint"):
        train(make_config(tiny_overrides("tiny_llama", data_dir, f"resume={tmp_path / 'empty'}"), tmp_path / "b"))
    train(make_config(tiny_overrides("tiny_llama", data_dir, "trainer.max_steps=2"), tmp_path / "memvp"))
    with pytest.raises(CheckpointMismatch, match="missing .* trainable tensors"):
        lora = [o for o in tiny_overrides("tiny_llama", data_dir) if o != "method.n=64"]
        train(make_config([*lora, "method=lora", f"resume={tmp_path / 'memvp'}"], tmp_path / "c"))


def test_resume_true_without_checkpoint_starts_fresh(data_dir, tmp_path):
    metrics = train(make_config(tiny_overrides("tiny_llama", data_dir, "resume=true"), tmp_path))
    assert (tmp_path / "results.json").exists() and "test/vqa_score" in metrics


def _losses(run_dir: Path, version: int = 0) -> dict[int, str]:
    """Per-step training losses of one CSV log (each start of a run writes a new version)."""
    rows = csv.DictReader((run_dir / "csv" / f"version_{version}" / "metrics.csv").open())
    return {int(row["step"]): row["train/loss"] for row in rows if row.get("train/loss")}


def test_latest_checkpoint_skips_a_truncated_or_corrupt_newest_file(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    good = folder / "epoch=0-step=5.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}}, good)
    blob = good.read_bytes()
    truncated, corrupt = folder / "last.ckpt", folder / "latest-step.ckpt"
    truncated.write_bytes(blob[: len(blob) // 2])
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF  # inside the tensor data: the archive opens, its CRC fails
    corrupt.write_bytes(bytes(flipped))
    for age, path in enumerate((good, truncated, corrupt)):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    assert latest_checkpoint(tmp_path) == good
    good.unlink()
    assert latest_checkpoint(tmp_path) is None


def test_sigkilled_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    """SIGKILL mid-epoch after a step checkpoint; the resumed run ends bit-identical to a run that
    was never interrupted: same trained tensors, same per-step losses, same test metrics, and it
    continues the same W&B run."""
    args = [
        sys.executable,
        "-m",
        "memvp_lab.train",
        *tiny_overrides(
            "tiny_llama",
            data_dir,
            "logger=default",
            "trainer.max_steps=40",
            "trainer.val_check_interval=10",
            "callbacks.step_checkpoint.every_n_train_steps=7",
            "threads=1",
        ),
    ]
    env = {**os.environ, "WANDB_SILENT": "true"}
    subprocess.run([*args, f"hydra.run.dir={tmp_path / 'whole'}"], check=True, capture_output=True, env=env)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args, f"hydra.run.dir={killed}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "latest-step.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first step checkpoint"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    stopped_at = torch.load(killed / "checkpoints" / "latest-step.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped_at < 40 and stopped_at % 13 != 0  # mid-epoch (13 batches per epoch)

    subprocess.run(
        [*args, f"hydra.run.dir={tmp_path / 'resumer'}", f"resume={killed}"], check=True, capture_output=True, env=env
    )
    whole, resumed = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "whole", killed))
    tensors = [load_file(d / "trainable" / "trainable.safetensors") for d in (tmp_path / "whole", killed)]
    for name, tensor in tensors[0].items():
        assert torch.equal(tensor, tensors[1][name]), name
    whole_losses = _losses(tmp_path / "whole")
    assert _losses(killed, version=1) == {s: v for s, v in whole_losses.items() if s >= stopped_at}
    assert {k: v for k, v in resumed.items() if k.startswith("test/")} == {
        k: v for k, v in whole.items() if k.startswith("test/")
    }
    run_ids = {p.name.rsplit("-", 1)[-1] for p in (killed / "wandb").glob("offline-run-*")}
    assert len(list((killed / "wandb").glob("offline-run-*"))) == 2 and run_ids == {
        (killed / "wandb_run_id").read_text()
    }
