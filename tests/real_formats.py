"""Small datasets written in the real distribution formats (VQAv2 Karpathy + official annotations,
GQA LXMERT files, COCO Karpathy captions, per-image CLIP-style HDF5 features)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

TOKENS, DIM = 49, 256  # vision=tiny_random


def write_feature_dir(folder: Path, img_ids, seed: int = 0, shape=(TOKENS, DIM)) -> None:
    """One ``<img_id>.h5`` per image with dataset ``/<img_id>/features`` in float16."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for img_id in img_ids:
        with h5py.File(folder / f"{img_id}.h5", "w") as f:
            f.create_group(img_id).create_dataset("features", data=rng.standard_normal(shape).astype(np.float16))


def _questions(prefix: str, n: int, start: int) -> list[dict]:
    out = []
    answers = ["yes", "no", "2", "red"]
    for i in range(n):
        a = answers[i % 4]
        out.append(
            {
                "img_id": f"{prefix}{i % 5:012d}",
                "question_id": start + i,
                "sent": f"question number {i}?",
                "label": {a: 1.0, "maybe": 0.3},
                "answer_type": {"yes": "yes/no", "no": "yes/no", "2": "number"}.get(a, "other"),
                "question_type": "what is",
            }
        )
    return out


def write_vqav2(root: Path, shape=(TOKENS, DIM)) -> Path:
    """Karpathy question files + official annotations + per-image features of ``shape``
    (CLIP RN101 grids in the community release: (49, 2048))."""
    (root / "vqa").mkdir(parents=True, exist_ok=True)
    splits = {
        "train": _questions("COCO_train2014_", 24, 1000),
        "val": _questions("COCO_val2014_", 8, 2000),
        "test": _questions("COCO_val2014_", 8, 3000),
    }
    for split, entries in splits.items():
        (root / "vqa" / f"karpathy_{split}.json").write_text(json.dumps(entries))
    anns = [
        {
            "question_id": q["question_id"],
            "image_id": 0,
            "answers": [{"answer": max(q["label"], key=q["label"].get), "answer_id": k + 1} for k in range(10)],
        }
        for split in ("val", "test")
        for q in splits[split]
    ]
    (root / "vqa" / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": anns}))
    ids = {q["img_id"] for entries in splits.values() for q in entries}
    write_feature_dir(root / "COCO" / "clip_features" / "data_clip_RN101_att", sorted(ids), shape=shape)
    return root


def write_gqa(root: Path) -> Path:
    (root / "GQA").mkdir(parents=True, exist_ok=True)
    train, valid = _questions("", 16, 1), _questions("", 4, 100)
    testdev = [
        {
            **q,
            "img_id": f"n{q['img_id']}",
            "question_id": f"{q['question_id']:08d}",
            "label": {a: 1.0 for a in q["label"] if a != "maybe"},
        }
        for q in _questions("", 6, 200)
    ]
    for name, entries in (("train", train), ("valid", valid), ("testdev", testdev)):
        for e in entries:
            e.pop("answer_type"), e.pop("question_type")
        (root / "GQA" / f"{name}.json").write_text(json.dumps(entries))
    write_feature_dir(
        root / "VG" / "clip_features" / "data_clip_RN101_att", sorted({q["img_id"] for q in train + valid})
    )
    write_feature_dir(
        root / "GQA" / "clip_features" / "data_clip_RN101_att", sorted({q["img_id"] for q in testdev}), seed=1
    )
    return root


def write_coco_captions(root: Path) -> Path:
    images = []
    for i, split in enumerate(["train"] * 6 + ["restval"] * 2 + ["val"] * 3 + ["test"] * 3):
        name = f"COCO_val2014_{i:012d}"
        images.append(
            {
                "filename": f"{name}.jpg",
                "cocoid": i,
                "split": split,
                "filepath": "val2014",
                "sentences": [{"raw": f"A red circle on a table {k}.", "tokens": []} for k in range(3)],
            }
        )
    (root / "COCO").mkdir(parents=True, exist_ok=True)
    (root / "COCO" / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    write_feature_dir(
        root / "COCO" / "clip_features" / "data_clip_RN101_att", [Path(im["filename"]).stem for im in images]
    )
    return root


def write_scienceqa(root: Path, image_size: int = 32, features: Path | None = None) -> Path:
    """problems.json + pid_splits.json + images/<split>/<qid>/image.png (+ features keyed by qid)."""
    from PIL import Image

    subjects = ["natural science", "social science", "language science"]
    problems, splits = {}, {"train": [], "val": [], "test": [], "minival": []}
    rng = np.random.default_rng(0)
    for i in range(24):
        split = "train" if i < 12 else "val" if i < 16 else "test"
        qid = str(100 + i)
        image = "image.png" if i % 3 else None
        problems[qid] = {
            "question": f"Which option is number {i % 3}?",
            "choices": ["zero", "one", "two"][: 2 + i % 2],
            "answer": (i % 3) % (2 + i % 2),
            "hint": "A hint." if i % 4 == 0 else "",
            "image": image,
            "subject": subjects[i % 3],
            "grade": f"grade{1 + i % 12}",
            "split": split,
            "lecture": "",
            "solution": "",
        }
        splits[split].append(qid)
        if image:
            folder = root / "images" / split / qid
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(folder / image)
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps(splits))
    if features is not None:
        with h5py.File(features, "w") as f:
            for qid, p in problems.items():
                if p["image"]:
                    f.create_group(qid).create_dataset(
                        "features", data=rng.standard_normal((TOKENS, DIM)).astype(np.float16)
                    )
    return root


def write_video_qa(root: Path, name: str, answers: int, frames: int = 64, dim: int = 512) -> Path:
    """<name>/{train,val}.jsonl (HERO fields) + <name>/<vision>.h5 with (frames, dim) per video."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    videos = [f"video_{i:03d}" for i in range(6)]
    for split, n in (("train", 12), ("val", 6)):
        lines = []
        for i in range(n):
            q = {
                "qid": f"{split}{i}",
                "vid_name": videos[i % 6],
                "q": f"What happens in scene {i}?",
                "answer_idx": i % answers,
                "ts": "0-10",
            }
            q.update({f"a{k}": f"option {k} of {i}" for k in range(answers)})
            lines.append(json.dumps(q))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    with h5py.File(folder / "clip_vit_b32_frames.h5", "w") as f:
        for v in videos:
            f.create_group(v).create_dataset("features", data=rng.standard_normal((frames, dim)).astype(np.float16))
    return root
