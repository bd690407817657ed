"""A tiny offline mirror of the official dataset sources: for each URL a task config lists, a file
at ``<mirror>/<host>/<path>`` in the official format (the official archives' member layout, the
official JSON fields), small enough to prepare in seconds."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

VQA = "s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
COCO_ZIPS = "images.cocodataset.org/zips"
KARPATHY = "cs.stanford.edu/people/karpathy/deepimagesent"
LXMERT_GQA = "nlp.cs.unc.edu/data/lxmert_data/gqa"
GQA_IMAGES = "downloads.cs.stanford.edu/nlp/data/gqa"
TVQA = "nlp.cs.unc.edu/data/jielei/tvqa/files"
HOW2QA = "datarelease.blob.core.windows.net/value-leaderboard/how2qa"

TRAIN_IDS = [1, 2, 3, 4, 5, 6]  # COCO train2014 image ids
VAL_IDS = {"restval": [101, 102, 103, 104], "val": [105, 106, 107, 108], "test": [109, 110, 111, 112]}
# The ten human answers of question k (cycled): multiple_choice_answer is the most common one.
ANSWERS = [
    ["yes"] * 4 + ["no"] * 3 + ["2"] * 2 + ["Two"],  # yes 1.0, no 0.9, 2 0.6; raw "Two" is not "2"
    ["red"] * 9 + ["purple"],  # purple: the answer of no question, never in the vocabulary
    ["2"] * 3 + ["3"] * 7,
    ["no"] * 6 + ["yes"] * 4,
]


def jpeg(size: int = 8, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _tar_gz(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def coco_name(subset: str, image_id: int) -> str:
    return f"COCO_{subset}_{image_id:012d}"


def write_coco(mirror: Path) -> None:
    """train2014.zip / val2014.zip (``<subset>/COCO_<subset>_<id>.jpg``) and caption_datasets.zip
    (``dataset_coco.json``: Karpathy's split)."""
    for subset, ids in (("train2014", TRAIN_IDS), ("val2014", [i for v in VAL_IDS.values() for i in v])):
        members = {f"{subset}/{coco_name(subset, i)}.jpg": jpeg(seed=i) for i in ids}
        _zip(mirror / COCO_ZIPS / f"{subset}.zip", members)
    images = [("train2014", i, "train") for i in TRAIN_IDS]
    images += [("val2014", i, split) for split, ids in VAL_IDS.items() for i in ids]
    karpathy = {
        "dataset": "coco",
        "images": [
            {
                "filepath": subset,
                "filename": f"{coco_name(subset, i)}.jpg",
                "imgid": n,
                "split": split,
                "cocoid": i,
                "sentids": [2 * n, 2 * n + 1],
                "sentences": [
                    {
                        "raw": f"A photo number {i}, caption {k}.",
                        "tokens": ["a", "photo"],
                        "imgid": n,
                        "sentid": 2 * n + k,
                    }
                    for k in range(2)
                ],
            }
            for n, (subset, i, split) in enumerate(images)
        ],
    }
    _zip(mirror / KARPATHY / "caption_datasets.zip", {"dataset_coco.json": json.dumps(karpathy).encode()})


def vqa_questions(subset: str, ids: list[int]) -> tuple[list[dict], list[dict]]:
    """Two questions per image: (questions, annotations) in the official fields."""
    questions, annotations = [], []
    for i in ids:
        for k in range(2):
            qid = i * 1000 + k
            answers = ANSWERS[(i + k) % len(ANSWERS)]
            if (i, k) == (6, 1):  # the one question answered "teal": out of any vocabulary of min 2
                answers = ["teal"] * 10
            questions.append({"image_id": i, "question": f"What is in image {i}, question {k}?", "question_id": qid})
            annotations.append(
                {
                    "question_type": "what is",
                    "multiple_choice_answer": max(set(answers), key=answers.count),
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": n + 1} for n, a in enumerate(answers)
                    ],
                    "image_id": i,
                    "answer_type": "yes/no" if answers[0] in ("yes", "no") else "other",
                    "question_id": qid,
                }
            )
    return questions, annotations


def write_vqav2(mirror: Path) -> None:
    """The four official VQAv2 zips, each holding its one JSON file."""
    write_coco(mirror)
    for subset, ids, name in (
        ("train2014", TRAIN_IDS, "Train"),
        ("val2014", [i for v in VAL_IDS.values() for i in v], "Val"),
    ):
        questions, annotations = vqa_questions(subset, ids)
        head = {"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": subset}
        _zip(
            mirror / VQA / f"v2_Questions_{name}_mscoco.zip",
            {
                f"v2_OpenEnded_mscoco_{subset}_questions.json": json.dumps(
                    {**head, "task_type": "Open-Ended", "questions": questions}
                ).encode()
            },
        )
        _zip(
            mirror / VQA / f"v2_Annotations_{name}_mscoco.zip",
            {f"v2_mscoco_{subset}_annotations.json": json.dumps({**head, "annotations": annotations}).encode()},
        )


GQA_SPLITS = {"train": ["1", "2", "3"], "valid": ["4"], "testdev": ["n5", "n6"]}


def write_gqa(mirror: Path) -> None:
    """LXMERT's GQA files and the official images.zip (``images/<id>.jpg``, one image no question
    uses)."""
    for split, ids in GQA_SPLITS.items():
        entries = [
            {"img_id": i, "question_id": f"{split}{i}{k}", "sent": f"Is there a cat {k}?", "label": {"yes": 1.0}}
            for i in ids
            for k in range(2)
        ]
        (mirror / LXMERT_GQA).mkdir(parents=True, exist_ok=True)
        (mirror / LXMERT_GQA / f"{split}.json").write_text(json.dumps(entries))
    ids = [i for v in GQA_SPLITS.values() for i in v] + ["99"]
    _zip(mirror / GQA_IMAGES / "images.zip", {f"images/{i}.jpg": jpeg(seed=n) for n, i in enumerate(ids)})


def video_questions(videos: list[str], options: int, per_video: int = 2) -> str:
    lines = []
    for n, video in enumerate(videos):
        for k in range(per_video):
            q = {"qid": n * 10 + k, "q": f"What happens {k}?", "vid_name": video, "ts": "1.5-7.0", "answer_idx": k}
            q.update({f"a{o}": f"option {o}" for o in range(options)})
            lines.append(json.dumps(q))
    return "\n".join(lines) + "\n"


TVQA_VIDEOS = {
    "train": ["s01e01_seg01_clip_00", "friends_s01e01_seg01_clip_00"],
    "val": ["castle_s01e01_seg01_clip_00"],
}


def write_tvqa(mirror: Path) -> dict[str, bytes]:
    """tvqa_qa_release.tar.gz in the mirror; returns the frame archive's members
    (``frames_hq/<show>_frames/<vid_name>/<n>.jpg``), which a user places by hand."""
    members = {
        f"tvqa_qa_release/tvqa_{split}.jsonl": video_questions(videos, 5).encode()
        for split, videos in TVQA_VIDEOS.items()
    }
    members["tvqa_qa_release/tvqa_test_public.jsonl"] = b""
    _tar_gz(mirror / TVQA / "tvqa_qa_release.tar.gz", members)
    shows = {"s01e01": "bbt", "friends": "friends", "castle": "castle"}
    frames = {}
    for n, video in enumerate(v for videos in TVQA_VIDEOS.values() for v in videos):
        show = shows[video.split("_")[0]]
        for f in range(3 + n):  # 3, 4, 5 frames: sampled up to vision.num_tokens
            frames[f"frames_hq/{show}_frames/{video}/{f + 1:05d}.jpg"] = jpeg(seed=10 * n + f)
    return frames


HOW2QA_VIDEOS = {"train": ["0", "1"], "val": ["2"]}


def write_how2qa(mirror: Path) -> None:
    (mirror / HOW2QA).mkdir(parents=True, exist_ok=True)
    for split, videos in HOW2QA_VIDEOS.items():
        (mirror / HOW2QA / f"how2qa_{split}_release.jsonl").write_text(video_questions(videos, 4))


def write_frames(folder: Path, videos: list[str], frames: int = 4) -> None:
    """``<folder>/<vid_name>/<n>.jpg``: frames a user extracted from each clip."""
    for n, video in enumerate(videos):
        (folder / video).mkdir(parents=True, exist_ok=True)
        for f in range(frames):
            (folder / video / f"{f + 1:05d}.jpg").write_bytes(jpeg(seed=100 + 10 * n + f))


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    _tar_gz(path, members)
    return path
