"""results.json's provenance: the commit a run's code came from, read when the run starts."""

from __future__ import annotations

import json
import subprocess

import pytest

from memvp_lab.results import records


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    assert records.git_state(tmp_path) == {"sha": sha, "dirty": False}
    (tmp_path / "untracked.txt").write_text("outputs are not code\n")
    assert records.git_state(tmp_path) == {"sha": sha, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert records.git_state(tmp_path) == {"sha": sha, "dirty": True}
    assert records.git_state(tmp_path / "missing") == {"sha": None, "dirty": None}


@pytest.fixture
def fresh_code_state():
    records.code_state.cache_clear()
    yield
    records.code_state.cache_clear()  # the next caller reads the real checkout again


def test_a_record_names_the_commit_read_at_the_start_not_the_one_checked_out_at_the_end(
    tmp_path, monkeypatch, fresh_code_state
):
    heads = iter([{"sha": "a" * 40, "dirty": False}, {"sha": "b" * 40, "dirty": True}])
    monkeypatch.setattr(records, "git_state", lambda cwd=None: next(heads))
    assert records.code_state()["sha"] == "a" * 40  # train() reads it before training
    # a commit lands and a file changes while the run trains; the record still names the first
    written = records.write_failure(tmp_path / "results.json", RuntimeError("boom"), None, step=3, checkpoint=None)
    assert written["git"] == {"sha": "a" * 40, "dirty": False}
    assert json.loads((tmp_path / "results.json").read_text())["git"] == {"sha": "a" * 40, "dirty": False}
    assert next(heads)["sha"] == "b" * 40  # git was asked once
