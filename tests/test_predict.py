"""Answers about image files from a trained adapter: ``memvp_lab.load``, ``python -m
memvp_lab.predict`` and ``python -m memvp_lab.export``, on a tiny run of the shapes task.

The reference is the run itself: an image file of the test split, asked its test question,
must get exactly the answer the run wrote to ``predictions_test.json`` (same encoder, same
float16 storage, same standardisation, same prompt layout), from the run folder and from the
exported folder after the run folder is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import memvp_lab
from helpers import make_config as compose
from helpers import shapes_annotations, tiny_overrides
from memvp_lab import predict
from memvp_lab.data.images import load_image
from memvp_lab.errors import CheckpointMismatch, ConfigError
from memvp_lab.train import train
from memvp_lab.training.checkpoint import FEATURE_STATS
from memvp_lab.training.finished_run import data_module, load_run

pytestmark = pytest.mark.slow  # trains a tiny run once per module

QUESTIONS = 12


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    train(compose(tiny_overrides("tiny_llama", data_dir), folder))
    return folder


def test_questions(run: Path) -> list[tuple[Path, str, str]]:
    """(image file, question, the run's own answer) for the first test questions."""
    results = json.loads((run / "results.json").read_text())
    root = shapes_annotations(results).parent.parent
    entries = json.loads((root / results["config"]["task"]["data"]["test_file"]).read_text())[:QUESTIONS]
    answers = {p["question_id"]: p["answer"] for p in json.loads((run / "predictions_test.json").read_text())}
    return [(root / "images" / f"{e['img_id']}.jpg", e["sent"], answers[e["question_id"]]) for e in entries]


test_questions.__test__ = False  # a helper, not a test


def _cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMVP_LAB_DATA": str(cwd / "no-data-here")}  # the data is not needed
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_load_answers_exactly_as_the_run_predicted(run):
    cases = test_questions(run)
    model = memvp_lab.load(run)
    answers = model.answer_batch([c[0] for c in cases], [c[1] for c in cases], batch_size=5)
    assert answers == [c[2] for c in cases]
    assert model.answer(cases[0][0], cases[0][1]) == cases[0][2]
    # The features of an image file equal what training read from its feature file, with the
    # standardisation statistics the run saved.
    store = data_module(load_run(run)).feature_sources
    np.testing.assert_array_equal(model.stats[0], store.scale[0])
    np.testing.assert_array_equal(model.stats[1], store.scale[1])
    image = cases[0][0]
    ours = model.features(load_image(image, 224))
    np.testing.assert_allclose(ours, store.get(image.stem), atol=1e-2)


def test_predict_cli_single_folder_and_jsonl(run, tmp_path):
    cases = test_questions(run)
    image, question, expected = cases[0]
    proc = _cli("memvp_lab.predict", [f"run_dir={run}", f"image={image}", f"question={question}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == expected

    folder = tmp_path / "images"
    folder.mkdir()
    for img, _, _ in cases[:3]:
        shutil.copy(img, folder / img.name)
    proc = _cli(
        "memvp_lab.predict", [f"run_dir={run}", "images=images", f"question={question}", "out=a.jsonl"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [Path(r["image"]).name for r in rows] == sorted(img.name for img, _, _ in cases[:3])
    assert rows[[Path(r["image"]).name for r in rows].index(image.name)]["answer"] == expected

    lines = [
        json.dumps({"image": f"images/{img.name}", "question": q, "id": k}) for k, (img, q, _) in enumerate(cases[:3])
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    proc = _cli("memvp_lab.predict", [f"run_dir={run}", "input=q.jsonl", "out=b.jsonl", "batch_size=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == [c[2] for c in cases[:3]] and [r["id"] for r in rows] == [0, 1, 2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["image=missing.jpg", "question=what?"], "error: image=missing.jpg: no such file"),
        (["image=x.jpg"], 'error: image= needs question="..."'),
        (["images=nowhere", "question=q"], "error: images=nowhere: not a folder"),
        (["input=q.jsonl", "image=x.jpg"], "error: give exactly one of image=<file>, images=<folder>, input="),
        (["image=x.jpg", "question=q", "method.n=3"], "error: method.n: not a setting of python -m memvp_lab.predict"),
    ],
)
def test_predict_bad_input_is_one_line_naming_it(run, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMVP_LAB_DATA", str(tmp_path / "no-data-here"))
    assert predict.main([f"run_dir={run}", *args]) == 2  # in-process; the next test runs the command
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(message) and "Traceback" not in err, err[-2000:]


def test_the_command_reports_bad_input_without_a_traceback(run, tmp_path):
    proc = _cli("memvp_lab.predict", [f"run_dir={run}", "image=missing.jpg", "question=what?"], tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: image=missing.jpg: no such file")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_exported_folder_answers_after_the_run_is_deleted(run, tmp_path):
    cases = test_questions(run)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    proc = _cli("memvp_lab.export", [f"run_dir={copy}", "out=adapter"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapter = tmp_path / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == sorted(
        ["README.md", "config.yaml", "results.json", "trainable.json", "trainable.safetensors", FEATURE_STATS]
    )
    card = (adapter / "README.md").read_text()
    results = json.loads((run / "results.json").read_text())
    assert f"Only the {results['params/trainable']:,} parameters" in card
    assert f"| vqa_score | {results['test/vqa_score']:.4f} |" in card
    assert "python -m memvp_lab.train" in card and "hf upload" not in card  # the card says how to use it
    shutil.rmtree(copy)

    model = memvp_lab.load(adapter)
    assert model.answer_batch([c[0] for c in cases], [c[1] for c in cases]) == [c[2] for c in cases]
    image, question, expected = cases[1]
    proc = _cli("memvp_lab.predict", [f"run_dir={adapter}", f"image={image}", f"question={question}"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == expected, proc.stderr[-2000:]

    # An existing folder is left alone unless overwrite=true.
    before = (adapter / "README.md").read_text()
    proc = _cli("memvp_lab.export", [f"run_dir={run}", "out=adapter"], tmp_path)
    assert proc.returncode == 2 and "out=adapter exists and is not empty" in proc.stderr
    assert (adapter / "README.md").read_text() == before


def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_difference(run, tmp_path):
    with pytest.raises(CheckpointMismatch, match=r"backbone.hidden_size: trained with 64, given 32"):
        memvp_lab.load(run, overrides=["backbone.hidden_size=32", "backbone.num_heads=2"])
    adapter = tmp_path / "adapter"
    from memvp_lab.export import export

    export(run, adapter)
    config = yaml.safe_load((adapter / "config.yaml").read_text())
    other_vision = {**config, "vision": {**config["vision"], "name": "tiny_random_128", "feature_dim": 128}}
    (adapter / "config.yaml").write_text(yaml.safe_dump(other_vision))
    with pytest.raises(
        CheckpointMismatch,
        match=r"vision.name: trained with 'tiny_random'.*vision.feature_dim: trained with 256, given 128",
    ):
        memvp_lab.load(adapter)
    other_method = {**config, "method": {**config["method"], "name": "lora"}}
    (adapter / "config.yaml").write_text(yaml.safe_dump(other_method))
    with pytest.raises(CheckpointMismatch, match=r"holds method=memvp, the config names method=lora"):
        memvp_lab.load(adapter)
    with pytest.raises(ConfigError, match=r"not a trained adapter"):
        memvp_lab.load(tmp_path)
