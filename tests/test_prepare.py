"""``python -m memvp_lab.prepare`` against an offline mirror (a folder addressed as ``file://``)
holding tiny files in the official formats at the official URLs' paths: the task's layout is
built and trains, an interrupted download resumes, a corrupted file is named and fetched afresh,
and nothing verified is fetched again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import pytest

from memvp_lab.data.downloads import Source, fetch, mirrored
from memvp_lab.errors import DataError
from memvp_lab.prepare import main as prepare_main
from real_formats import write_scienceqa

REPO_FILES = "raw.githubusercontent.com/lupantech/ScienceQA/main/data/scienceqa"
IMAGES = "scienceqa.s3.us-west-1.amazonaws.com/images"


def build_mirror(tmp_path: Path) -> Path:
    """The ScienceQA sources as a mirror: problems.json, pid_splits.json and one zip per split
    whose members are <split>/<qid>/image.png, as the official archives hold them."""
    made = write_scienceqa(tmp_path / "official")
    mirror = tmp_path / "mirror"
    (mirror / REPO_FILES).mkdir(parents=True)
    (mirror / IMAGES).mkdir(parents=True)
    for name in ("problems.json", "pid_splits.json"):
        shutil.copy(made / name, mirror / REPO_FILES / name)
    for split in ("train", "val", "test"):
        with zipfile.ZipFile(mirror / IMAGES / f"{split}.zip", "w") as z:
            for image in sorted((made / "images" / split).rglob("image.png")):
                z.write(image, image.relative_to(made / "images").as_posix())
    return mirror


def test_mirrored_url_keeps_host_and_path():
    url = "https://scienceqa.s3.us-west-1.amazonaws.com/images/train.zip"
    assert mirrored(url, "file:///m/") == "file:///m/scienceqa.s3.us-west-1.amazonaws.com/images/train.zip"
    assert mirrored(url, None) == url


@pytest.mark.slow  # runs the training CLI on the prepared layout
def test_prepare_builds_the_layout_resumes_and_names_a_corrupted_file(tmp_path, capsys):
    mirror = build_mirror(tmp_path)
    url = f"file://{mirror}"
    root = tmp_path / "scienceqa"

    # --dry-run: every source with its URL and state; nothing is written.
    assert prepare_main(["scienceqa", "--root", str(root), "--mirror", url, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert plan.count("to fetch") == 5 and f"{url}/{IMAGES}/train.zip" in plan
    # No size is published: the dry run asks the server (here the mirror) what it will send.
    assert plan.count("by the server; to fetch") == 5 and "does not publish" not in plan
    assert not root.exists()

    # An interrupted download: half of problems.json is already in its .part file.
    whole = (mirror / REPO_FILES / "problems.json").read_bytes()
    root.mkdir()
    (root / "problems.json.part").write_bytes(whole[: len(whole) // 2])
    # A corrupted file: the mirror's val.zip is truncated.
    good_val = (mirror / IMAGES / "val.zip").read_bytes()
    (mirror / IMAGES / "val.zip").write_bytes(good_val[:-40])
    code = prepare_main(["scienceqa", "--root", str(root), "--mirror", url, "--features", "none"])
    assert code == 2
    assert "error: val.zip from https://scienceqa.s3.us-west-1.amazonaws.com/images/val.zip: not a valid zip" in (
        capsys.readouterr().err
    )
    assert (root / "problems.json").read_bytes() == whole  # resumed, then verified
    assert not (root / "downloads" / "val.zip.part").exists()  # the bad download is not kept
    assert sorted(p.name for p in (root / "images").iterdir()) == ["train"]  # unpacked before the error

    # The mirror is repaired, and the files already verified disappear from it: the second run
    # must not fetch them again.
    (mirror / IMAGES / "val.zip").write_bytes(good_val)
    (mirror / REPO_FILES / "problems.json").unlink()
    (mirror / IMAGES / "train.zip").unlink()
    # This run goes through the command line, as a user types it, from a fresh folder.
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [
        "-m",
        "memvp_lab.prepare",
        "scienceqa",
        "--root",
        str(root),
        "--mirror",
        url,
        "--features",
        "tiny_random",
    ]
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run([sys.executable, *command], cwd=tmp_path / "cwd", env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(root)
    official = tmp_path / "official"
    for path in sorted((official / "images").rglob("image.png")):
        assert (root / path.relative_to(official)).read_bytes() == path.read_bytes()
    with h5py.File(root / "features" / "tiny_random.h5") as f:
        images = sorted(p.parent.name for p in (official / "images").rglob("image.png"))
        assert sorted(f) == images and f[images[0]]["features"].shape == (49, 256)
    records = json.loads((root / "pid_splits.json.verified.json").read_text())
    assert records["url"].startswith("https://raw.githubusercontent.com/") and len(records["sha256"]) == 64

    # The layout trains as task=scienceqa with no other data setting.
    args = [
        "task=scienceqa",
        f"task.root={root}",
        "vision=tiny_random",
        "backbone=tiny_llama",
        "trainer=debug",
        "logger=csv",
        "method.n=64",
        "task.data.max_prompt_tokens=64",
        "task.data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "memvp_lab.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/accuracy" in json.loads((tmp_path / "run" / "results.json").read_text())


def test_a_published_checksum_that_does_not_match_names_the_file(tmp_path):
    (tmp_path / "m" / "example.org").mkdir(parents=True)
    (tmp_path / "m" / "example.org" / "a.json").write_text("{}")
    source = Source(url="https://example.org/a.json", to="a.json", sha256="0" * 64)
    with pytest.raises(DataError, match=r"a.json from https://example.org/a.json: checksum mismatch"):
        fetch(source, tmp_path / "root", mirror=f"file://{tmp_path / 'm'}")
    assert not (tmp_path / "root" / "a.json").exists() and not (tmp_path / "root" / "a.json.part").exists()
    ok = Source(url="https://example.org/a.json", to="a.json", size=2)
    assert fetch(ok, tmp_path / "root", mirror=f"file://{tmp_path / 'm'}").read_text() == "{}"


def test_a_file_to_place_by_hand_is_named_with_where_to_get_it(tmp_path, capsys):
    args = [
        "scienceqa",
        "--root",
        str(tmp_path),
        "--features",
        "none",
        "task.sources=[{to: form.json, manual: 'request it at https://example.org/form'}]",
    ]
    assert prepare_main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'form.json'} is missing: request it at https://example.org/form" in err
    (tmp_path / "form.json").write_text("[]")
    assert prepare_main(args) == 0


def test_a_task_without_sources_says_where_its_files_go(capsys):
    assert prepare_main(["shapes_vqa", "--dry-run"]) == 2
    assert "task=shapes_vqa declares no sources to fetch (task.sources)" in capsys.readouterr().err
