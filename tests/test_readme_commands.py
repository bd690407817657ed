"""Every command the README shows, run as a user types it: in a fresh folder, with a user's
environment, one after the other (later commands use what earlier ones made).

Long commands run at a small scale: the overrides in ``SCALE`` are appended (fewer steps and
questions), never replacing a choice the command makes. Placeholders (``<run dir>``,
``<folder>``) become what an earlier command made. A command that another test runs names that
test in ``ELSEWHERE``; one that cannot run on this machine says why in ``NOT_RUN``. A new command
in the README fails ``test_every_readme_command_is_run_or_accounted_for`` until it is added to one
of the three.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from helpers import REPO, save_tiny_model
from memvp_lab.visualize import SUMMARY

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
DATA = SCALE[4:8]
# README command -> what the test appends, in the order they run (later ones use earlier runs).
RUN: dict[str, tuple[str, ...]] = {
    "python -m memvp_lab.train": SCALE,
    "python -m memvp_lab.train method.ablation=no_visual": SCALE,
    "python -m memvp_lab.train -m method.lr=1e-3,3e-3": SCALE,
    "python -m memvp_lab.train backbone=tiny_llama vision=tiny_random trainer=debug": DATA,
    "python -m memvp_lab.train method=llava_lora": SCALE,
    "python -m memvp_lab.params": (),
    "python -m memvp_lab.evaluate run_dir=<run dir> split=val": (),
    "python -m memvp_lab.evaluate run_dir=<run dir> task.generation.num_beams=5 out_dir=beams5": (),
    "python -m memvp_lab.visualize run_dir=<run dir> 'question_types=[color,count]'": (),
    "python -m memvp_lab.features extract --vision <clip_rn101|clip_vit_l14|efficientnet_lite0> --images <folder> "
    "--out <file.h5 or folder>": (),
    "python -m memvp_lab.report demo_seeds": (),
    'python -m memvp_lab.predict run_dir=<run dir> image=<image file> question="What color is the circle?"': (),
    'python -m memvp_lab.predict run_dir=<run dir> images=<folder> question="How many shapes are there?" '
    "out=answers.jsonl": (),
    "python -m memvp_lab.export run_dir=<run dir> out=my-adapter": (),
    'python -m memvp_lab.predict run_dir=my-adapter image=<image file> question="What color is the circle?"': (),
    "python -m memvp_lab.train backbone=hf_causal backbone.model_id=<model folder>": ("vision=tiny_random", *SCALE),
    "python -m memvp_lab.params --backbone llama3_8b qwen2_5_7b": (),
    "python -m memvp_lab.params --backbone llama_7b llama_13b": (),
    "python -m memvp_lab.params vision=clip_vit_l14_336 --backbone llama_7b --method vlora_official": (),
    "python -m memvp_lab.prepare scienceqa --root <dir> --dry-run": (),
    "python -m memvp_lab.train -m experiment=demo_seeds_llava seed=0 threads=2 hydra.sweep.dir=multirun/threads2": SCALE,
    "python -m memvp_lab.train experiment=demo_seeds_llava seed=0 threads=2 logger=csv": SCALE,
    "python -m memvp_lab.train experiment=demo_seeds_llava seed=0 threads=1 logger=csv trainer.max_steps=6 trainer.log_every_n_steps=1": SCALE,
}
# README command -> the test that runs it (or its make recipe) as a user would, at a small scale.
ELSEWHERE = {
    "make demo": "tests/test_readme_commands.py::test_make_demo_runs_the_default_command",
    "make demo-seeds": "tests/test_experiments.py::test_demo_seeds_runs_memvp_and_llava_lora_over_three_seeds_then_reports",
    "make reproduce-*": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-fig-4": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-mini-table-3": "tests/test_mini_reproductions.py::test_mini_reproduction_sweeps_and_reports",
    "make reproduce-mini-table-4": "tests/test_mini_reproductions.py::test_mini_reproduction_sweeps_and_reports",
    "make reproduce-adem-vl-table-6": "tests/test_mini_reproductions.py::test_mini_reproduction_sweeps_and_reports",
    "make reproduce-mini-compare": "tests/test_mini_reproductions.py::test_mini_reproduction_sweeps_and_reports",
    "make reproduce-mini-compare-lr": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-table-1": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-table-2": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-table-3": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-table-4": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make reproduce-table-8": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make report-table-N": "tests/test_experiments.py::test_make_targets_run_every_cell_then_report",
    "make bench": "tests/test_bench.py::test_compare_study_writes_table_json_and_plot_and_the_sweep_summary_joins_them",
    "make visualize": "tests/test_visualize.py::test_cli_writes_one_png_per_question",
    "make list-experiments": "tests/test_experiments.py::test_every_experiment_file_says_how_to_run_and_report_it",
    "python -m memvp_lab.bench study=<name>": "tests/test_bench.py::test_compare_study_writes_table_json_and_plot_and_the_sweep_summary_joins_them",
    "python -m memvp_lab.bench study=prefix_cache": "tests/test_bench.py::test_prefix_cache_study_times_both_paths_of_one_model_and_they_agree",
    "python -m memvp_lab.evaluate": "tests/test_evaluate.py::test_the_command_as_a_user_types_it",
    "python -m memvp_lab.visualize": "tests/test_visualize.py::test_cli_writes_one_png_per_question",
    "python -m memvp_lab.report <experiment>": (
        "tests/test_mini_reproductions.py::test_mini_reproduction_sweeps_and_reports"
    ),
    "python -m memvp_lab.prepare <task>": (
        "tests/test_prepare.py::test_prepare_builds_the_layout_resumes_and_names_a_corrupted_file"
    ),
    "python -m memvp_lab.train task=<name> task.root=<dir> ...": "tests/test_tasks.py::test_features_of_another_vision_stop_the_run_before_weights_load",
}
NOT_RUN = {
    "make test": "the suite itself: `.ci/run` runs it",
    "hf upload <user>/<name> my-adapter .": "needs a Hugging Face account and a network",
    "make data TASK=scienceqa ROOT=<dir>": (
        "fetches several GB from the official sources (tests/test_prepare.py runs it against an offline mirror)"
    ),
    "make test-fast": "the suite's fast tier: `.ci/run` runs it within `make test`",
    "make test-slow": "the suite's slow tier: `.ci/run` runs it within `make test`",
    "make setup": "`.ci/run` runs it on a clean clone before the tests",
    "make lint": "`.ci/run` runs it before the tests",
    "make format": "rewrites the checkout's files; `make lint` checks the same rules",
    "make lock": "re-resolves every pin from the package index",
    "python -m memvp_lab.train logger.wandb.offline=false": "needs a W&B account and a network",
    "python -m memvp_lab.train backbone=hf_causal backbone.model_id=Qwen/Qwen2.5-0.5B": (
        "needs the model hub (the same command on a local folder runs above; tests/test_hf_families.py covers Qwen2)"
    ),
    "python -m memvp_lab.train -m experiment=adem_vl_table1": (
        "needs LLaMA-7B / 13B from the model hub, ScienceQA and GPUs (tests/test_experiments.py composes every job)"
    ),
    "python -m memvp_lab.train -m experiment=adem_vl_coco": (
        "needs LLaMA-13B / 7B from the model hub, COCO and GPUs (tests/test_experiments.py composes every job)"
    ),
    "python -m memvp_lab.train method=vl_pet backbone=t5_base vision=clip_rn101 task=<task>": (
        "needs t5-base from the model hub and a downloaded dataset (tests/test_tasks.py runs the tasks on tiny models)"
    ),
    "python -m memvp_lab.bench study=fig4_left study.train_batch_size=64 study.eval_batch_size=512": (
        "needs t5-base from the model hub and a GPU-sized batch"
    ),
    "python -m memvp_lab.train -m experiment=table1 hydra/launcher=slurm trainer=ddp trainer.devices=4 "
    "hydra.launcher.partition=gpu": "needs a SLURM cluster (tests/test_slurm_launcher.py checks the submission)",
}


def readme_commands() -> list[str]:
    """Every command of the README: the lines of its ```bash blocks (without their comments) and
    every inline `python -m memvp_lab...` or `make ...` span, whitespace joined."""
    text = (REPO / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    blocks = [line.split("  #")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    inline = [" ".join(span.split()) for span in re.findall(r"`((?:python -m memvp_lab|make )[^`]*)`", text)]
    return list(dict.fromkeys(blocks + inline))


def test_every_readme_command_is_run_or_accounted_for():
    commands = set(readme_commands())
    accounted = [set(RUN), set(ELSEWHERE), set(NOT_RUN)]
    assert commands == set().union(*accounted), (commands - set().union(*accounted), set().union(*accounted) - commands)
    assert sum(map(len, accounted)) == len(commands)  # each in one place only
    for command, test in ELSEWHERE.items():
        path, name = test.split("::")
        assert f"def {name}(" in (REPO / path).read_text(), (command, test)


def test_make_demo_runs_the_default_command():
    recipe = (REPO / "Makefile").read_text().split("\ndemo: ")[1].splitlines()[1].strip()
    assert recipe == "$(PY) -m memvp_lab.train hydra.run.dir=outputs/demo/$$(date +%Y-%m-%d_%H-%M-%S)"


def _user_env() -> dict[str, str]:
    """What a user's shell has: PATH, HOME, the locale; plus the thread cap of a test worker."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS", "MEMVP_LAB_CACHE")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert argv[0] == "python"
    proc = subprocess.run(
        [sys.executable, *argv[1:]], cwd=cwd, env=_user_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stderr[-3000:]}"
    return proc


def _records(folder: Path) -> list[tuple[Path, dict]]:
    return [(p.parent, json.loads(p.read_text())) for p in sorted(folder.rglob("results.json"))]


@pytest.mark.slow
def test_readme_commands_run_as_typed(tmp_path):
    places: dict[str, str] = {
        "<clip_rn101|clip_vit_l14|efficientnet_lite0>": "efficientnet_lite0",
        "<model folder>": str(save_tiny_model(tmp_path / "my-model")),
        "<dir>": "scienceqa-data",
    }
    done: dict[str, subprocess.CompletedProcess] = {}
    for command, extra in RUN.items():
        typed = command
        for placeholder, value in places.items():
            typed = typed.replace(placeholder, shlex.quote(value))
        done[command] = _run([*shlex.split(typed), *extra], tmp_path)
        if "<run dir>" not in places and (tmp_path / "outputs").exists():  # the default's run
            places["<run dir>"] = str(_records(tmp_path / "outputs")[0][0])
            places["<folder>"] = str(next((tmp_path / "data").rglob("*.jpg")).parent)
            places["<image file>"] = str(sorted((tmp_path / "data").rglob("shapes_test_*.jpg"))[0])
            places["<file.h5 or folder>"] = "features.h5"

    outputs = [record for _, record in _records(tmp_path / "outputs")]
    assert all(r["status"] == "completed" for r in outputs)
    chosen = sorted((r["config"]["method"]["name"], r["config"]["method"].get("ablation")) for r in outputs)
    assert chosen == [
        ("llava_lora", None),
        ("llava_lora", None),  # method=llava_lora, and the demo_seeds_llava probes with 1 and 2 threads
        ("llava_lora", None),
        ("memvp", "no_visual"),
        ("memvp", "none"),
        ("memvp", "none"),
        ("memvp", "none"),
    ]
    assert {r["config"]["backbone"]["name"] for r in outputs} == {"smollm2_135m", "tiny_llama", "hf_causal"}
    probe = [r for r in outputs if r["config"].get("experiment_name") == "demo_seeds"]
    assert sorted(r["config"]["threads"] for r in probe) == [1, 2]
    assert sorted(r["machine"]["torch_threads"] for r in probe) == [1, 2]
    assert places["<model folder>"] in {r["config"]["backbone"].get("model_id") for r in outputs}
    (threads2,) = [record for _, record in _records(tmp_path / "multirun" / "threads2")]
    assert threads2["machine"]["torch_threads"] == 2 and threads2["config"]["method"]["name"] == "llava_lora"
    sweep = [record for folder, record in _records(tmp_path / "multirun") if "threads2" not in folder.parts]
    assert sorted(r["config"]["method"]["lr"] for r in sweep) == [1e-3, 3e-3]

    assert "| bart_base | memvp | 3,784,704 |" in done["python -m memvp_lab.params"].stdout
    run_dir = Path(places["<run dir>"])
    assert json.loads((run_dir / "evaluate" / "val" / "evaluation.json").read_text())["split"] == "val"
    beams = json.loads((tmp_path / "beams5" / "evaluation.json").read_text())
    assert beams["split"] == "test" and "task.generation.num_beams=5" in beams["overrides"]
    drawn = json.loads((run_dir / "visualize" / SUMMARY).read_text())["questions"]
    asked = sorted(q["question"].split()[1] for q in drawn)  # "What color ...", "How many ..."
    assert asked == ["color", "many"] and all("answer" in q for q in drawn)
    assert sorted(p.name for p in (run_dir / "visualize").glob("*.png")) == sorted(q["png"] for q in drawn)
    images = len(list(Path(places["<folder>"]).glob("*.jpg")))
    with h5py.File(tmp_path / "features.h5") as f:
        assert len(f) == images and f[next(iter(f))]["features"].shape == (49, 1280)
    assert "missing" in done["python -m memvp_lab.report demo_seeds"].stdout
    single = 'python -m memvp_lab.predict run_dir=<run dir> image=<image file> question="What color is the circle?"'
    exported = 'python -m memvp_lab.predict run_dir=my-adapter image=<image file> question="What color is the circle?"'
    answer = done[single].stdout.strip().splitlines()[-1]
    assert answer and done[exported].stdout.strip().splitlines()[-1] == answer
    rows = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == images and all(r["question"] == "How many shapes are there?" and "answer" in r for r in rows)
    assert "python -m memvp_lab.train" in (tmp_path / "my-adapter" / "README.md").read_text()
    plan = done["python -m memvp_lab.prepare scienceqa --root <dir> --dry-run"].stdout
    assert plan.count("to fetch") == 5 and "https://scienceqa.s3.us-west-1.amazonaws.com/images/train.zip" in plan
    assert not (tmp_path / "scienceqa-data").exists()  # a dry run writes nothing
    table = done["python -m memvp_lab.params --backbone llama3_8b qwen2_5_7b"].stdout
    assert "| llama3_8b | memvp | 3,870,848 |" in table and "| qwen2_5_7b | memvp | 3,477,120 |" in table
    table = done["python -m memvp_lab.params --backbone llama_7b llama_13b"].stdout
    assert "| llama_7b | adem_vl | 4,530,432 |" in table and "| llama_13b | adem_vl | 5,449,984 |" in table
    assert "| llama_7b | vlora | 4,057,216 |" in table
    official = done["python -m memvp_lab.params vision=clip_vit_l14_336 --backbone llama_7b --method vlora_official"]
    assert "| llama_7b | vlora_official | 7,590,307,328 |" in official.stdout
