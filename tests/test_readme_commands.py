"""The README's command blocks, run as a user types them: in a fresh folder, with a user's
environment, one after the other (later commands use the runs of earlier ones).

Long commands run at a small scale: the overrides in ``SCALE`` are appended (fewer steps and
questions), never replacing a choice the command makes. Placeholders (``<run dir>``) become the
run an earlier command made. A command that cannot run on this machine says why in ``NOT_RUN``;
a new command in the README fails ``test_every_readme_command_is_run_or_says_why_not`` until it
is added to one of the two.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

# Appended to every training command of the embedded default: 2 steps on a small generated set.
SCALE = (
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "task.data.num_train_images=24",
    "task.data.num_val_questions=10",
    "task.data.num_test_questions=16",
    "task.data.eval_batch_size=16",
    "flops_samples=1",
)
# README command -> what the test appends to it (in README order: later ones use earlier runs).
RUN: dict[str, tuple[str, ...]] = {
    "python -m memvp_lab.train method.ablation=no_visual": SCALE,
    "python -m memvp_lab.train -m method.lr=1e-3,3e-3": SCALE,
    "python -m memvp_lab.train backbone=tiny_llama vision=tiny_random trainer=debug": SCALE[4:8],
    "python -m memvp_lab.train method=llava_lora": SCALE,
    "python -m memvp_lab.params": (),
    "python -m memvp_lab.evaluate run_dir=<run dir> split=val": (),
    "python -m memvp_lab.evaluate run_dir=<run dir> task.generation.num_beams=5 out_dir=beams5": (),
}
NOT_RUN = {
    "make demo": "its recipe is `python -m memvp_lab.train` with a run folder (checked below); ten minutes at full scale",
    "make test": "the suite itself: `.ci/run` runs it",
    "python -m memvp_lab.train logger.wandb.offline=false": "needs a W&B account and a network",
    "python -m memvp_lab.train method=vl_pet backbone=t5_base vision=clip_rn101 task=<task>": (
        "needs t5-base from the model hub and a downloaded dataset (tests/test_tasks.py runs the tasks on tiny models)"
    ),
}


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks, without its trailing comment."""
    text = (REPO / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_readme_command_is_run_or_says_why_not():
    commands = readme_commands()
    assert len(commands) == len(set(commands)) == 11
    assert set(commands) == set(RUN) | set(NOT_RUN)
    assert not set(RUN) & set(NOT_RUN)


def test_make_demo_runs_the_default_command():
    recipe = (REPO / "Makefile").read_text().split("\ndemo: ")[1].splitlines()[1].strip()
    assert recipe == "$(PY) -m memvp_lab.train hydra.run.dir=outputs/demo/$$(date +%Y-%m-%d_%H-%M-%S)"


def _user_env() -> dict[str, str]:
    """What a user's shell has: PATH, HOME, the locale; plus the thread cap of a test worker."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS", "MEMVP_LAB_CACHE")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "python"
    proc = subprocess.run(
        [sys.executable, *argv[1:]], cwd=cwd, env=_user_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return proc


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("results.json"))]


@pytest.mark.slow
def test_readme_commands_run_as_typed(tmp_path):
    done: dict[str, subprocess.CompletedProcess] = {}
    run_dir = None
    for command, extra in RUN.items():
        if "<run dir>" in command:
            command = command.replace("<run dir>", str(run_dir))
        done[command] = _run(" ".join([command, *extra]), tmp_path)
        if run_dir is None and (tmp_path / "outputs").exists():
            run_dir = next((tmp_path / "outputs").rglob("results.json")).parent

    outputs = _records(tmp_path / "outputs")
    assert all(r["status"] == "completed" for r in outputs)
    chosen = sorted((r["config"]["method"]["name"], r["config"]["method"].get("ablation")) for r in outputs)
    assert chosen == [("llava_lora", None), ("memvp", "no_visual"), ("memvp", "none")]
    assert {r["config"]["backbone"]["name"] for r in outputs} == {"smollm2_135m", "tiny_llama"}
    sweep = _records(tmp_path / "multirun")
    assert sorted(r["config"]["method"]["lr"] for r in sweep) == [1e-3, 3e-3]

    params = next(p for c, p in done.items() if c.startswith("python -m memvp_lab.params"))
    assert "| bart_base | memvp | 3,784,704 |" in params.stdout
    assert json.loads((run_dir / "evaluate" / "val" / "evaluation.json").read_text())["split"] == "val"
    beams = json.loads((tmp_path / "beams5" / "evaluation.json").read_text())
    assert beams["split"] == "test" and "task.generation.num_beams=5" in beams["overrides"]
