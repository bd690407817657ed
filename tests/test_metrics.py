"""Task metrics against values computed by hand or by the reference implementation directly."""

from __future__ import annotations

import shutil

import pytest
import torch

from memvp_lab.metrics import (
    CaptionScores,
    ChoiceAccuracy,
    ExactMatch,
    caption_scores,
    choice_index,
    exact_match,
    problem_categories,
    scienceqa_scores,
)
from memvp_lab.metrics.grouped import GatheredRecords, GroupedMean

NEEDS_JAVA = pytest.mark.skipif(
    shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs Java (make java)"
)


def _problem(subject, grade, hint="", image=None, answer=0, split="test"):
    return {
        "question": "q",
        "choices": ["a", "b", "c"],
        "answer": answer,
        "hint": hint,
        "image": image,
        "subject": subject,
        "grade": grade,
        "split": split,
    }


PROBLEMS = {
    "1": _problem("natural science", "grade3", hint="some text", image="image.png", answer=0),  # NAT TXT IMG G1-6
    "2": _problem("social science", "grade8", image="image.png", answer=1),  # SOC IMG G7-12
    "3": _problem("language science", "grade6", answer=2),  # LAN NO G1-6
    "4": _problem("natural science", "grade12", hint="ctx", answer=1),  # NAT TXT G7-12
    "5": _problem("natural science", "grade1", answer=0, split="train"),  # not scored
}


def test_scienceqa_categories_follow_the_official_definitions():
    assert problem_categories(PROBLEMS["1"]) == ["NAT", "TXT", "IMG", "G1-6"]
    assert problem_categories(PROBLEMS["2"]) == ["SOC", "IMG", "G7-12"]
    assert problem_categories(PROBLEMS["3"]) == ["LAN", "NO", "G1-6"]


def test_scienceqa_scores_by_hand():
    # right: 1 (pred 0), 3 (pred 2); wrong: 2 (pred 0), 4 (no letter: -1)
    scores = scienceqa_scores({"1": 0, "2": 0, "3": 2, "4": -1}, PROBLEMS)
    assert scores == {
        "NAT": 50.0,
        "SOC": 0.0,
        "LAN": 100.0,
        "TXT": 50.0,
        "IMG": 50.0,
        "NO": 100.0,
        "G1-6": 100.0,
        "G7-12": 0.0,
        "Average": 50.0,
    }
    with pytest.raises(KeyError, match="'4'"):
        scienceqa_scores({"1": 0, "2": 0, "3": 2}, PROBLEMS)


def test_choice_index_reads_the_first_capital_letter():
    assert choice_index("B", 4) == 1
    assert choice_index(" C.", 4) == 2
    assert choice_index("The answer is C.", 4) == -1  # the first capital is T: beyond 4 options
    assert choice_index("c", 4) == -1 and choice_index("E", 4) == -1 and choice_index("", 2) == -1


def test_exact_match_has_no_normalisation():
    assert exact_match(" yes ", ["yes"]) == 1.0
    assert exact_match("Yes", ["yes"]) == 0.0 and exact_match("a dog", ["dog"]) == 0.0


def test_grouped_mean_counts_each_index_once_and_allows_several_groups():
    m = GroupedMean(groups=["A", "B"])
    m.add([1.0, 0.0, 1.0], [["A"], ["A", "B"], ["B"]], [0, 1, 2])
    m.add([0.0], [["A"]], [0])  # a repeat of index 0 (a padded distributed shard): ignored
    out = {k: float(v) for k, v in m.compute().items()}
    assert out == {"overall": pytest.approx(2 / 3), "A": 0.5, "B": 0.5}


def test_choice_accuracy_and_exact_match_metrics():
    acc = ChoiceAccuracy(groups=["IMG"])
    acc.update([0, 1, -1], [0, 0, 2], [["IMG"], [], ["IMG"]], [0, 1, 2])
    assert float(acc.compute()["overall"]) == pytest.approx(1 / 3) and float(acc.compute()["IMG"]) == 0.5
    em = ExactMatch()
    em.update(["yes", "no"], [["yes"], ["yes"]], indices=[0, 1])
    assert float(em.compute()["overall"]) == 0.5


def test_gathered_records_keep_dataset_order_and_drop_repeats():
    m = GatheredRecords()
    m.add([{"p": "b"}, {"p": "ä"}], [5, 2])
    m.add([{"p": "repeat"}], [5])
    assert m.records() == [{"p": "ä"}, {"p": "b"}]


REFS = {
    1: ["A man is riding a horse.", "A person rides a brown horse on a field.", "man on horseback"],
    2: ["Two dogs play in the grass.", "Dogs are playing on a lawn.", "two puppies running"],
    3: ["A plate of food with broccoli.", "Broccoli and rice on a white plate.", "a meal on a plate"],
}
PREDS = {1: "a man riding a horse", 2: "two dogs playing in the grass", 3: "a plate of broccoli"}


@NEEDS_JAVA
def test_caption_scores_equal_pycocoevalcap_used_directly():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFS.items()})
    res = tokenizer.tokenize({k: [{"caption": v}] for k, v in PREDS.items()})
    ours = caption_scores(PREDS, REFS, meteor=False)
    assert ours["cider"] == Cider().compute_score(gts, res)[0]
    assert ours["bleu4"] == Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    assert ours["rouge_l"] == Rouge().compute_score(gts, res)[0]
    assert ours["cider"] > caption_scores({k: "a cat" for k in PREDS}, REFS, meteor=False)["cider"]


@NEEDS_JAVA
def test_caption_metric_gathers_then_scores_the_corpus():
    metric = CaptionScores(meteor=False)
    keys = sorted(PREDS)
    metric.update([PREDS[k] for k in keys[:2]], [REFS[k] for k in keys[:2]], torch.tensor([0, 1]))
    metric.update([PREDS[keys[2]]], [REFS[keys[2]]], torch.tensor([2]))
    direct = caption_scores(
        {i: PREDS[k] for i, k in enumerate(keys)}, {i: REFS[k] for i, k in enumerate(keys)}, meteor=False
    )
    assert {k: float(v) for k, v in metric.compute().items()} == direct


@NEEDS_JAVA
@pytest.mark.slow
def test_meteor_runs_offline():
    assert 0.0 < caption_scores(PREDS, REFS)["meteor"] < 1.0


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        records = GatheredRecords()
        grouped = GroupedMean(groups=["A"])
        if rank == 0:
            records.add([{"p": "zero"}, {"p": "two, longer"}], [0, 2])
            grouped.add([1.0, 0.0], [["A"], []], [0, 2])
        else:  # index 2 again: a distributed sampler's padding repeat
            records.add([{"p": "one ü"}, {"p": "two, longer"}, {"p": "three"}], [1, 2, 3])
            grouped.add([1.0, 0.0, 1.0], [["A"], [], ["A"]], [1, 2, 3])
        queue.put((rank, records.compute(), {k: float(v) for k, v in grouped.compute().items()}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_metrics_gather_across_two_processes_and_count_each_sample_once():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for _, records, grouped in results:
        assert records == [{"p": "zero"}, {"p": "one ü"}, {"p": "two, longer"}, {"p": "three"}]
        assert grouped == {"overall": 0.75, "A": 1.0}
