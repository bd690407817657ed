"""Procedurally generated shapes VQA, written in the VQAv2 (Karpathy split) file layout.

Each 224x224 image holds 1-3 objects; every object has its own shape (circle / square /
triangle), its own colour (6) and its own cell of a 3x3 grid, drawn with jitter on a noisy
background. Questions come in five types (color, shape, count, position, yes/no), each with ten
simulated human answers (mostly the canonical answer, some surface variants such as "Two" or
"red.", a few mistakes), so the official VQA accuracy applies unchanged.

Layout written under ``root`` (the same one the VQAv2 loader reads)::

    root/images/<img_id>.jpg
    root/vqa/karpathy_{train,val,test}.json          # img_id, question_id, sent, label, ...
    root/vqa/annotations.json                         # official-format answers of val + test
    root/meta.json                                    # generator settings and counts
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (230, 205, 40),
    "purple": (135, 60, 175),
    "orange": (240, 135, 30),
}
SHAPES = ("circle", "square", "triangle")
QUESTION_TYPES = ("color", "shape", "count", "position", "yes/no")
ANSWER_TYPE = {"color": "other", "shape": "other", "count": "number", "position": "other", "yes/no": "yes/no"}
ANSWERS = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "count": ("1", "2", "3"),
    "position": ("left", "right"),
    "yes/no": ("yes", "no"),
}
NUMBER_WORDS = {"1": "one", "2": "two", "3": "three"}
IMAGE_SIZE = 224
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShapesVQASpec:
    """Generator settings; equal settings give byte-identical datasets."""

    seed: int
    num_train_images: int
    num_val_questions: int
    num_test_questions: int
    image_size: int = IMAGE_SIZE

    def dirname(self) -> str:
        return (
            f"shapes_vqa_seed{self.seed}_train{self.num_train_images}"
            f"_val{self.num_val_questions}_test{self.num_test_questions}"
        )


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    row: int
    col: int


def vqa_soft_score(count: int) -> float:
    """VQAv2 soft target of an answer given by ``count`` of the 10 annotators (LXMERT files)."""
    return min(1.0, 0.3 * count)


def sample_scene(rng: random.Random) -> list[SceneObject]:
    n = rng.randint(1, 3)
    shapes = rng.sample(SHAPES, n)
    colors = rng.sample(list(COLORS), n)
    cells = rng.sample(range(9), n)
    return [SceneObject(s, c, cell // 3, cell % 3) for s, c, cell in zip(shapes, colors, cells)]


def render_scene(objects: list[SceneObject], rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """Draws the objects on a tinted, noisy background."""
    base = np.array([rng.randint(200, 245) for _ in range(3)], dtype=np.float32)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(img)
    cell = size / 3
    for obj in objects:
        radius = rng.uniform(0.26, 0.36) * cell
        cx = (obj.col + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        cy = (obj.row + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        shade = np.array(COLORS[obj.color], dtype=np.float32) + rng.uniform(-15, 15)
        fill = tuple(int(v) for v in np.clip(shade, 0, 255))
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    pixels = np.asarray(img, dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, 6.0, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def candidate_questions(objects: list[SceneObject], rng: random.Random) -> list[tuple[str, str, str]]:
    """All (question_type, question, canonical answer) triples this scene supports."""
    out: list[tuple[str, str, str]] = []
    for obj in objects:
        out.append(("color", f"What color is the {obj.shape}?", obj.color))
        out.append(("shape", f"What shape is the {obj.color} object?", obj.shape))
        if obj.col != 1:
            side = "left" if obj.col == 0 else "right"
            out.append(("position", f"Is the {obj.shape} on the left or right?", side))
    out.append(("count", "How many shapes are there?", str(len(objects))))
    present = {(o.color, o.shape) for o in objects}
    obj = rng.choice(objects)
    out.append(("yes/no", f"Is there a {obj.color} {obj.shape}?", "yes"))
    # A "no" question that shares the colour or the shape with an object, so it needs both.
    if rng.random() < 0.5:
        absent = [(obj.color, s) for s in SHAPES if (obj.color, s) not in present]
    else:
        absent = [(c, obj.shape) for c in COLORS if (c, obj.shape) not in present]
    color, shape = rng.choice(absent)
    out.append(("yes/no", f"Is there a {color} {shape}?", "no"))
    return out


def surface_variant(answer: str, rng: random.Random) -> str:
    """A way a human might type the same answer that the VQA normalisation maps back."""
    variants = [answer.capitalize(), answer + ".", answer.upper() if len(answer) < 4 else answer.title()]
    if answer in NUMBER_WORDS:
        variants.append(NUMBER_WORDS[answer])
    return rng.choice(variants)


def simulate_answers(qtype: str, answer: str, rng: random.Random) -> list[str]:
    """Ten annotator answers: mostly canonical, some variants, a few mistakes."""
    answers = []
    for _ in range(10):
        r = rng.random()
        if r < 0.85:
            answers.append(answer)
        elif r < 0.95:
            answers.append(surface_variant(answer, rng))
        else:
            answers.append(rng.choice([a for a in ANSWERS[qtype] if a != answer]))
    return answers


def _label(answers: list[str]) -> dict[str, float]:
    # Imported here to keep the generator importable without the metrics stack.
    from memvp_lab.metrics.vqa_score import normalize_answer

    counts = Counter(normalize_answer(a) for a in answers)
    return {a: vqa_soft_score(c) for a, c in counts.items()}


def _balanced(candidates: list[dict], per_type: int, rng: random.Random) -> list[dict]:
    """Picks ``per_type`` questions of each type with answers as balanced as the pool allows."""
    picked: list[dict] = []
    for qtype in QUESTION_TYPES:
        by_answer: dict[str, list[dict]] = {}
        for c in candidates:
            if c["question_type"] == qtype:
                by_answer.setdefault(c["answer"], []).append(c)
        for pool in by_answer.values():
            rng.shuffle(pool)
        keys = sorted(by_answer)
        i = 0
        taken = 0
        while taken < per_type and any(by_answer.values()):
            pool = by_answer[keys[i % len(keys)]]
            if pool:
                picked.append(pool.pop())
                taken += 1
            i += 1
    return picked


def generate(root: Path, spec: ShapesVQASpec) -> Path:
    """Writes the dataset under ``root / spec.dirname()`` unless it is already complete.

    Returns:
        The dataset directory.
    """
    out = Path(root) / spec.dirname()
    meta_path = out / "meta.json"
    if meta_path.exists():
        return out
    rng = random.Random(spec.seed)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    (out / "vqa").mkdir(exist_ok=True)

    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    annotations: list[dict] = []
    qid = 0
    for split in SPLITS:
        if split == "train":
            n_images = spec.num_train_images
        else:
            # Enough images that a balanced pick has every answer available.
            n_questions = spec.num_val_questions if split == "val" else spec.num_test_questions
            n_images = max(60, n_questions)
        candidates: list[dict] = []
        for i in range(n_images):
            img_id = f"shapes_{split}_{i:06d}"
            objects = sample_scene(rng)
            render_scene(objects, rng, spec.image_size).save(images_dir / f"{img_id}.jpg", quality=95)
            for qtype, question, answer in candidate_questions(objects, rng):
                candidates.append(
                    {"img_id": img_id, "sent": question, "question_type": qtype,
                     "answer_type": ANSWER_TYPE[qtype], "answer": answer}
                )
        if split == "train":
            chosen = candidates
        else:
            per_type = (spec.num_val_questions if split == "val" else spec.num_test_questions) // len(QUESTION_TYPES)
            chosen = _balanced(candidates, per_type, rng)
            rng.shuffle(chosen)  # mixed types, so any prefix of the split covers all of them
        for c in chosen:
            qid += 1
            answers = simulate_answers(c["question_type"], c["answer"], rng)
            entry = {
                "img_id": c["img_id"], "question_id": qid, "sent": c["sent"], "label": _label(answers),
                "answer_type": c["answer_type"], "question_type": c["question_type"],
            }
            splits[split].append(entry)
            if split != "train":
                annotations.append({
                    "question_id": qid, "image_id": c["img_id"], "question_type": c["question_type"],
                    "answer_type": c["answer_type"], "multiple_choice_answer": c["answer"],
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                for j, a in enumerate(answers)],
                })
    for split, entries in splits.items():
        (out / "vqa" / f"karpathy_{split}.json").write_text(json.dumps(entries))
    (out / "vqa" / "annotations.json").write_text(json.dumps({"annotations": annotations}))
    counts = {s: len(v) for s, v in splits.items()}
    # meta.json is written last: its presence marks a complete dataset.
    meta_path.write_text(json.dumps({"spec": asdict(spec), "questions": counts}, indent=2))
    log.info("shapes_vqa written to %s: %s questions", out, counts)
    return out
