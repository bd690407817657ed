"""Official dataset files turned into the layouts the tasks read (``task.prepare.convert``).

Each function takes the task root first, reads official files under it, and writes the task's
files atomically (aside, then renamed); one whose outputs all exist returns at once, so
``python -m memvp_lab.prepare`` can run again after any interruption.

* ``karpathy_vqa``: VQAv2's official questions and annotations, split by Karpathy's COCO image
  split as VL-T5 / VL-Adapter distribute ``vqa/karpathy_{train,val,test}.json`` (train: every
  train2014 question plus the ``restval`` val2014 images; val / test: the 5,000-image Karpathy val
  and test splits). VL-T5's users report 605,102 / 26,729 / 26,280 questions in its files, which
  is this split of the official 443,757 train2014 and 214,354 val2014 questions. Each question's
  ``label`` holds the soft scores of its answers that are in the answer vocabulary, computed as
  bottom-up-attention-vqa's ``tools/compute_softscore.py`` does (LXMERT and VL-T5 ship its
  vocabulary, 3,129 answers). A question none of whose answers is in the vocabulary keeps an
  empty label: VL-T5 trains on it with an empty target and weight 0.
* ``copy_files``: an official file placed under the name a task reads.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from memvp_lab.data.vqa import read_json
from memvp_lab.errors import DataError
from memvp_lab.metrics.vqa_score import process_digit_article, process_punctuation

log = logging.getLogger(__name__)

KARPATHY_VQA_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def write_json(path: Path, data) -> None:
    """Writes ``data`` as JSON beside ``path``, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def preprocess_answer(answer: str) -> str:
    """An answer as bottom-up-attention-vqa's ``preprocess_answer`` keys the vocabulary:
    the official evaluation's punctuation, then number-word / article / contraction processing,
    then commas removed."""
    return process_digit_article(process_punctuation(answer)).replace(",", "")


def answer_vocabulary(annotations: Iterable[Mapping], min_questions: int = 9) -> dict[str, int]:
    """answer -> label index: every preprocessed ``multiple_choice_answer`` given for at least
    ``min_questions`` distinct questions (bottom-up-attention-vqa ``filter_answers`` with
    ``min_occurence=9`` over train + val; indices in order of first appearance, as its
    ``create_ans2label``)."""
    questions: dict[str, set] = {}
    for a in annotations:
        questions.setdefault(preprocess_answer(a["multiple_choice_answer"]), set()).add(a["question_id"])
    kept = [answer for answer, ids in questions.items() if len(ids) >= min_questions]
    return {answer: i for i, answer in enumerate(kept)}


def soft_score(count: int) -> float:
    """bottom-up-attention-vqa's ``get_score``: 1, 2, 3, 4+ of the ten annotators -> 0.3, 0.6,
    0.9, 1 (the official accuracy min(1, n/3) averaged over leave-one-out subsets, rounded)."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def soft_label(answers: Sequence[Mapping], vocabulary: Mapping[str, int]) -> dict[str, float]:
    """answer -> soft score for the annotators' answers that are in the vocabulary. As in
    ``compute_target``, the raw answer strings are counted (the vocabulary's keys are
    preprocessed ones, so an answer given as "Two" does not count toward "2")."""
    counts = Counter(a["answer"] for a in answers)
    return {answer: soft_score(n) for answer, n in counts.items() if answer in vocabulary}


def _karpathy_images(karpathy_file: Path) -> dict[int, tuple[str, str]]:
    """COCO image id -> (file stem such as ``COCO_val2014_000000000042``, train / val / test)."""
    data = read_json(karpathy_file)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{karpathy_file} must be Karpathy's dataset_coco.json: an object with an 'images' list")
    out = {}
    for image in data["images"]:
        split = KARPATHY_VQA_SPLITS.get(image.get("split"))
        if split is None or "cocoid" not in image or "filename" not in image:
            raise DataError(
                f"{karpathy_file}: image {image.get('filename')!r} needs 'cocoid', 'filename' and a split "
                f"in {sorted(KARPATHY_VQA_SPLITS)} (has {image.get('split')!r})"
            )
        out[int(image["cocoid"])] = (Path(image["filename"]).stem, split)
    return out


def _entries(path: Path, key: str) -> list:
    """The ``key`` list of an official VQAv2 file (``questions`` or ``annotations``)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"{path} must be an official VQAv2 file: an object with a {key!r} list")
    return data[key]


def karpathy_vqa(
    root: Path,
    questions: Sequence[str],
    annotations: Sequence[str],
    karpathy_file: str,
    out_dir: str,
    min_questions: int = 9,
) -> None:
    """Writes ``<out_dir>/karpathy_{train,val,test}.json`` and ``trainval_ans2label.json`` /
    ``trainval_label2ans.json`` from the official VQAv2 files.

    Args:
        root: the task root; every other path is relative to it.
        questions: the official question files (``v2_OpenEnded_mscoco_{train,val}2014_questions.json``).
        annotations: the matching annotation files (``v2_mscoco_{train,val}2014_annotations.json``).
        karpathy_file: Karpathy's ``dataset_coco.json``.
        out_dir: where the task's files go.
        min_questions: an answer enters the vocabulary when at least this many questions have it
            as their ``multiple_choice_answer``.
    """
    out = Path(root) / out_dir
    names = [f"karpathy_{s}.json" for s in ("train", "val", "test")] + ["trainval_ans2label.json"]
    if all((out / n).is_file() for n in names):
        return
    split_of = _karpathy_images(Path(root) / karpathy_file)
    anns: dict[int, dict] = {}
    for name in annotations:
        anns.update((a["question_id"], a) for a in _entries(Path(root) / name, "annotations"))
    vocabulary = answer_vocabulary(anns.values(), min_questions)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for name in questions:
        for q in _entries(Path(root) / name, "questions"):
            image = split_of.get(q["image_id"])
            if image is None:
                raise DataError(
                    f"{name}: image {q['image_id']} of question {q['question_id']} is not in {karpathy_file}"
                )
            img_id, split = image
            a = anns.get(q["question_id"])
            if a is None:
                raise DataError(f"question {q['question_id']} of {name} has no annotation in {', '.join(annotations)}")
            splits[split].append(
                {
                    "img_id": img_id,
                    "question_id": q["question_id"],
                    "sent": q["question"],
                    "label": soft_label(a["answers"], vocabulary),
                    "answer_type": a["answer_type"],
                    "question_type": a["question_type"],
                }
            )
    for split, entries in splits.items():
        write_json(out / f"karpathy_{split}.json", entries)
    write_json(out / "trainval_label2ans.json", list(vocabulary))
    write_json(out / "trainval_ans2label.json", vocabulary)
    log.info(
        "karpathy VQA: %s questions, %d answers in the vocabulary",
        {s: len(e) for s, e in splits.items()},
        len(vocabulary),
    )


def copy_files(root: Path, files: Mapping[str, str]) -> None:
    """Copies each official file ``source -> destination`` (paths under ``root``) that is not
    there yet."""
    for source, destination in files.items():
        src, dst = Path(root) / source, Path(root) / destination
        if dst.is_file():
            continue
        if not src.is_file():
            raise DataError(f"{src} does not exist (it should have been unpacked from its archive)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
