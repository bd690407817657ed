"""``python -m memvp_lab.prepare`` builds every paper task's layout from an offline mirror of its
official sources (tiny files in the official formats): VQAv2's Karpathy question files with
bottom-up-attention-vqa's soft scores, COCO captions, GQA's two feature folders, TVQA and How2QA
with frames placed by hand. Each layout is then read by the task's own data module."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import pytest

import official_mirror as om
from helpers import make_config
from memvp_lab.data.conversion import answer_vocabulary, preprocess_answer, soft_label
from memvp_lab.prepare import main as prepare_main
from memvp_lab.training.factory import build_model, instantiate_node

# The COCO zips' published sizes and checksums are the real files'; the mirror's are tiny.
UNPUBLISHED = {
    "vqav2": [f"task.sources.{i}.{k}=null" for i in (5, 6) for k in ("size", "sha256")],
    "coco_caption": [f"task.sources.{i}.{k}=null" for i in (1, 2) for k in ("size", "sha256")],
}


def task_data(task: str, root: Path, *extra: str):
    """The task's data module, built as training builds it, set up on ``root``."""
    cfg = make_config(
        [f"task={task}", f"task.root={root}", "backbone=tiny_t5", "method=lora", "task.data.num_workers=0", *extra]
    )
    built = build_model(cfg)
    datamodule = instantiate_node(cfg.task.data, _partial_=True)(
        backbone=built.backbone, visual=built.visual, shuffle_seed=0
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def split_sizes(task: str, root: Path, *extra: str) -> dict[str, int]:
    return {split: len(d) for split, d in task_data(task, root, *extra).datasets.items()}


def test_the_answer_vocabulary_and_soft_scores_follow_bottom_up_attention_vqa():
    assert preprocess_answer("Two") == "2" and preprocess_answer("the dog's") == "dog's"
    assert preprocess_answer("1,000") == "1000"
    annotations = [{"question_id": q, "multiple_choice_answer": a} for q, a in enumerate(["Two", "2", "2.", "red"])]
    assert answer_vocabulary(annotations, min_questions=3) == {"2": 0}  # "Two", "2", "2." are one answer
    assert answer_vocabulary(annotations, min_questions=1) == {"2": 0, "red": 1}
    answers = [{"answer": a} for a in ["yes"] * 4 + ["no"] * 3 + ["2"] * 2 + ["Two"]]
    assert soft_label(answers, {"yes": 0, "no": 1, "2": 2}) == {"yes": 1.0, "no": 0.9, "2": 0.6}


@pytest.mark.slow  # prepares two tasks and sets up their data modules
def test_vqav2_and_coco_caption_build_from_the_official_files(tmp_path, capsys, caplog):
    mirror = tmp_path / "mirror"
    om.write_vqav2(mirror)
    url, root = f"file://{mirror}", tmp_path / "datasets"
    args = ["--root", str(root), "--mirror", url, "--features", "tiny_random", "vision.encoder.weights=random"]

    # The real COCO zips' sizes are published: the mirror's tiny zip is named as not matching.
    assert prepare_main(["vqav2", *args]) == 2
    assert (
        "error: train2014.zip from http://images.cocodataset.org/zips/train2014.zip: "
        f"{(mirror / om.COCO_ZIPS / 'train2014.zip').stat().st_size} bytes, the source publishes 13510573713"
    ) in capsys.readouterr().err

    with caplog.at_level(logging.INFO, logger="memvp_lab.prepare"):
        assert prepare_main(["vqav2", *args, *UNPUBLISHED["vqav2"], "task.prepare.convert.0.min_questions=2"]) == 0
    assert "vision=tiny_random task.data.features=COCO/clip_features/tiny_random" in caplog.text

    # Karpathy split: train2014 + restval -> train, val / test images -> val / test; two
    # questions per image.
    vqa = root / "vqa"
    splits = {s: json.loads((vqa / f"karpathy_{s}.json").read_text()) for s in ("train", "val", "test")}
    assert {s: len(e) for s, e in splits.items()} == {"train": 20, "val": 8, "test": 8}
    assert {e["img_id"] for e in splits["test"]} == {om.coco_name("val2014", i) for i in om.VAL_IDS["test"]}
    first = next(e for e in splits["train"] if e["question_id"] == 1000)  # image 1, question 0: ANSWERS[1]
    assert first == {
        "img_id": "COCO_train2014_000000000001",
        "question_id": 1000,
        "sent": "What is in image 1, question 0?",
        "label": {"red": 1.0},  # "purple" (1 of 10) is no question's answer: not in the vocabulary
        "answer_type": "other",
        "question_type": "what is",
    }
    yes_no = next(e for e in splits["train"] if e["question_id"] == 4000)  # image 4: ANSWERS[0]
    assert yes_no["label"] == {"yes": 1.0, "no": 0.9}  # "2" is no question's multiple-choice answer
    teal = next(e for e in splits["train"] if e["question_id"] == 6001)
    assert teal["label"] == {}  # one question's answer: below min_questions=2
    assert json.loads((vqa / "trainval_ans2label.json").read_text()).keys() == {"red", "3", "no", "yes"}
    assert (vqa / "v2_mscoco_val2014_annotations.json").is_file()
    features = root / "COCO" / "clip_features" / "tiny_random"
    assert len(list(features.glob("*.h5"))) == 18  # every COCO image of the split file
    with h5py.File(features / "COCO_val2014_000000000109.h5") as f:
        assert f["COCO_val2014_000000000109/features"].shape == (49, 256)

    # The task reads the layout; the question with an empty label trains on "" with weight 0, as
    # VL-T5's loader gives it.
    data = task_data("vqav2", root, "vision=tiny_random", "task.data.features=COCO/clip_features/tiny_random")
    assert {split: len(d) for split, d in data.datasets.items()} == {"train": 20, "val": 8, "test": 8}
    train = data.datasets["train"]
    sample = train[next(i for i, e in enumerate(train.entries) if e["question_id"] == 6001)]
    assert (sample["target"], sample["weight"]) == ("", 0.0)

    # COCO captions on the same root: the shared files are verified already; the mirror loses
    # them to prove they are not fetched again.
    for name in ("train2014.zip", "val2014.zip"):
        (mirror / om.COCO_ZIPS / name).unlink()
    (mirror / om.KARPATHY / "caption_datasets.zip").unlink()
    assert prepare_main(["coco_caption", *args, *UNPUBLISHED["coco_caption"]]) == 0
    sizes = split_sizes("coco_caption", root, "vision=tiny_random", "task.data.features=COCO/clip_features/tiny_random")
    assert sizes == {"train": 2 * (6 + 4), "val": 4, "test": 4}  # one sample per training caption


@pytest.mark.slow
def test_gqa_writes_train_and_test_dev_features_to_their_own_folders(tmp_path):
    mirror = tmp_path / "mirror"
    om.write_gqa(mirror)
    root = tmp_path / "datasets"
    args = ["gqa", "--root", str(root), "--mirror", f"file://{mirror}", "--features", "tiny_random"]
    assert prepare_main([*args, "vision.encoder.weights=random"]) == 0
    vg, gqa = root / "VG" / "clip_features" / "tiny_random", root / "GQA" / "clip_features" / "tiny_random"
    assert sorted(p.stem for p in vg.glob("*.h5")) == ["1", "2", "3", "4"]  # train + valid; not "99"
    assert sorted(p.stem for p in gqa.glob("*.h5")) == ["n5", "n6"]
    features = "task.data.features=[VG/clip_features/tiny_random,GQA/clip_features/tiny_random]"
    sizes = split_sizes("gqa", root, "vision=tiny_random", features)
    assert sizes == {"train": 8, "val": 4, "test": 4}


@pytest.mark.slow
def test_tvqa_asks_for_its_frames_by_hand_then_extracts_them(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    frames = om.write_tvqa(mirror)
    root = tmp_path / "video"
    args = ["tvqa", "--root", str(root), "--mirror", f"file://{mirror}"]
    small = ["vision.encoder.weights=random", "vision.num_tokens=4"]  # 4 frames per video

    assert prepare_main(["--dry-run", *args]) == 0
    assert "by hand: TVQA's video frames (3 fps, 43 GB) are sent after a form" in capsys.readouterr().out
    assert prepare_main([*args, *small]) == 2
    err = capsys.readouterr().err
    assert (
        "files to place by hand" in err
        and f"{root / 'tvqa/downloads/tvqa_video_frames_fps3_hq.tar.gz'} is missing" in err
    )
    assert (root / "tvqa" / "tvqa_qa_release" / "tvqa_train.jsonl").is_file()  # the public part is done

    om.tar_gz(root / "tvqa" / "downloads" / "tvqa_video_frames_fps3_hq.tar.gz", frames)
    assert prepare_main([*args, *small]) == 0
    with h5py.File(root / "tvqa" / "clip_vit_b32_frames.h5") as f:
        assert sorted(f) == sorted(v for videos in om.TVQA_VIDEOS.values() for v in videos)
        assert f["s01e01_seg01_clip_00/features"].shape == (4, 512)  # 3 frames, one repeated
    sizes = split_sizes("tvqa", root, *small, "method.prompt.pool_size=null")
    assert sizes == {"train": 4, "val": 2, "test": 2}


@pytest.mark.slow
def test_how2qa_names_the_frames_to_make_then_extracts_them(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    om.write_how2qa(mirror)
    root = tmp_path / "video"
    args = ["how2qa", "--root", str(root), "--mirror", f"file://{mirror}", "vision.encoder.weights=random"]
    args += ["vision.num_tokens=4"]
    assert prepare_main(args) == 2
    err = capsys.readouterr().err
    assert (
        "3 videos used by how2qa/train.jsonl, how2qa/val.jsonl are not under "
        f"{root / 'how2qa/frames/*'}, e.g. '0'; How2QA's clips come from HowTo100M"
    ) in err
    assert "how2qa/frames/<vid_name>/%05d.jpg" in err
    om.write_frames(root / "how2qa" / "frames", ["0", "1"])  # one video missing: named
    assert prepare_main(args) == 2
    assert "1 videos used by how2qa/train.jsonl, how2qa/val.jsonl are not under" in capsys.readouterr().err
    om.write_frames(root / "how2qa" / "frames", ["2"])
    assert prepare_main(args) == 0
    with h5py.File(root / "how2qa" / "clip_vit_b32_frames.h5") as f:
        assert sorted(f) == ["0", "1", "2"] and f["2/features"].shape == (4, 512)
    sizes = split_sizes("how2qa", root, "vision.num_tokens=4", "method.prompt.pool_size=null")
    assert sizes == {"train": 4, "val": 2, "test": 2}
