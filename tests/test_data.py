"""Shapes generator, VQAv2-format loader, feature stores: real files, clear errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from memvp_lab.data import shapes_vqa
from memvp_lab.data.extraction import consolidate
from memvp_lab.data.feature_files import FeatureStore
from memvp_lab.data.vqa import VQADataset, load_annotations, load_questions
from memvp_lab.errors import DataError, FeatureError
from memvp_lab.metrics.vqa_score import normalize_answer

SPEC = shapes_vqa.ShapesVQASpec(seed=3, num_train_images=12, num_val_questions=10, num_test_questions=40)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return shapes_vqa.generate(tmp_path_factory.mktemp("shapes"), SPEC)


def test_generator_is_deterministic(shapes_root, tmp_path):
    again = shapes_vqa.generate(tmp_path, SPEC)
    for name in ("karpathy_train.json", "karpathy_val.json", "karpathy_test.json", "annotations.json"):
        assert (shapes_root / "vqa" / name).read_bytes() == (again / "vqa" / name).read_bytes()


def test_vqav2_layout_and_balance(shapes_root):
    test = load_questions(shapes_root / "vqa" / "karpathy_test.json")
    refs = load_annotations(shapes_root / "vqa" / "annotations.json")
    assert len(test) == 40
    assert Counter(e["question_type"] for e in test) == {t: 8 for t in shapes_vqa.QUESTION_TYPES}
    for e in test:
        assert set(e) == {"img_id", "question_id", "sent", "label", "answer_type", "question_type", "tags"}
        assert len(refs[e["question_id"]]) == 10
        assert (shapes_root / "images" / f"{e['img_id']}.jpg").exists()
    yes_no = Counter(max(e["label"], key=e["label"].get) for e in test if e["question_type"] == "yes/no")
    assert yes_no["yes"] == yes_no["no"] == 4
    # Soft scores follow the VQAv2 convention: min(1, 0.3 * the number of annotators who gave the
    # (normalised) answer).
    for e in test:
        counts = Counter(normalize_answer(a) for a in refs[e["question_id"]])
        assert e["label"] == {a: min(1.0, 0.3 * n) for a, n in counts.items()}, e["question_id"]


def test_questions_are_tagged_with_their_scenes_object_count(shapes_root):
    for split in shapes_vqa.SPLITS:
        entries = load_questions(shapes_root / "vqa" / f"karpathy_{split}.json")
        by_image: dict[str, set] = {}
        for e in entries:
            assert len(e["tags"]) == 1 and e["tags"][0] in {"objects_1", "objects_2", "objects_3"}
            by_image.setdefault(e["img_id"], set()).add(e["tags"][0])
            if e["question_type"] == "count":  # the count answer is the scene's object count
                assert e["tags"] == [f"objects_{max(e['label'], key=e['label'].get)}"]
        assert all(len(tags) == 1 for tags in by_image.values())
    assert {t for e in load_questions(shapes_root / "vqa" / "karpathy_test.json") for t in e["tags"]} == {
        "objects_1",
        "objects_2",
        "objects_3",
    }


def _write_features(path: Path, ids, shape=(4, 3), per_image=False):
    if per_image:
        path.mkdir(parents=True, exist_ok=True)
        for i in ids:
            with h5py.File(path / f"{i}.h5", "w") as f:
                f.create_dataset(f"{i}/features", data=np.full(shape, float(len(i)), dtype=np.float16))
    else:
        with h5py.File(path, "w") as f:
            for i in ids:
                f.create_dataset(f"{i}/features", data=np.full(shape, float(len(i)), dtype=np.float16))


def test_both_feature_layouts_and_consolidation(tmp_path):
    ids = ["COCO_val2014_000000000042", "img7"]
    _write_features(tmp_path / "att", ids, per_image=True)
    per_image = FeatureStore(tmp_path / "att", 4, 3)
    out = consolidate(tmp_path / "att", tmp_path / "all.h5")
    single = FeatureStore(out, 4, 3)
    for i in ids:
        assert np.array_equal(per_image.get(i), single.get(i))
        assert per_image.get(i).dtype == np.float16


def test_missing_and_misshapen_features_name_id_and_file(tmp_path):
    _write_features(tmp_path / "f.h5", ["a"], shape=(4, 3))
    store = FeatureStore(tmp_path / "f.h5", 4, 3)
    with pytest.raises(FeatureError, match=r"'b'.*f\.h5"):
        store.get("b")
    with pytest.raises(FeatureError, match=r"'a'.*shape \(4, 3\), expected \(5, 3\)"):
        FeatureStore(tmp_path / "f.h5", 5, 3).get("a")
    _write_features(tmp_path / "dir", ["a"], per_image=True)
    with pytest.raises(FeatureError, match=r"'zz'.*zz\.h5 does not exist"):
        FeatureStore(tmp_path / "dir", 4, 3).get("zz")


def test_malformed_question_files(tmp_path):
    bad = tmp_path / "karpathy_val.json"
    bad.write_text(
        json.dumps(
            [
                {"img_id": "a", "question_id": 1, "sent": "q?", "label": {"x": 1}},
                {"img_id": "a", "question_id": 2, "label": {"x": 1}},
            ]
        )
    )
    with pytest.raises(DataError, match=r"karpathy_val\.json entry 1 \(question_id=2\): field 'sent'"):
        load_questions(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="empty split"):
        load_questions(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_questions(broken)


def test_training_samples_answers_by_score(tmp_path):
    _write_features(tmp_path / "f.h5", ["a"], shape=(4, 3))
    entries = [{"img_id": "a", "question_id": 1, "sent": "q?", "label": {"red": 0.9, "blue": 0.3}}]
    data = VQADataset(entries, FeatureStore(tmp_path / "f.h5", 4, 3), None, True, "x")
    picks = Counter(data[0]["target"] for _ in range(2000))
    assert 0.70 < picks["red"] / 2000 < 0.80  # 0.9 / (0.9 + 0.3) = 0.75
    assert {data[0]["weight"] for _ in range(50)} == {0.9, 0.3}
    assert data[0]["tags"] == []  # questions without tags (VQAv2) count only toward their types
    with pytest.raises(DataError, match="no human answers"):
        VQADataset(entries, FeatureStore(tmp_path / "f.h5", 4, 3), {}, False, "karpathy_test.json")
