"""The official VQA accuracy, checked against values worked out by hand."""

import pytest
import torch

from memvp_lab.metrics.vqa_score import VQAScore, normalize_answer, process_punctuation, vqa_score


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two", "2"),  # number word, case
        ("the dog.", "dog"),  # article, trailing period
        ("a red car", "red car"),
        ("isnt", "isn't"),  # contraction restored
        ("yes!", "yes"),  # '!' stripped
        ("1,000", "1000"),  # comma inside a number: punctuation removed, not spaced
        ("black/white", "black white"),  # '/' between words becomes a space
        ("3.5", "3.5"),  # a decimal point survives
        ("  none\n", "0"),
        ("the three", "3"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_stripping_stops_after_32():
    # Both scripts pass re.UNICODE (32) as re.sub's count: periods past the 32nd stay.
    assert process_punctuation("x." * 40) == "x" * 32 + "x." * 8


# (prediction, ten references, official score, VL-T5 score). Scores worked out by hand: with k of
# the ten references matching, the leave-one-out mean is (k * min(1, (k-1)/3) + (10-k) * min(1, k/3)) / 10,
# so 2 matches give 0.6 and 3 or more give 1.
RULE_CASES = {
    # all ten references identical: the official rule normalises nothing, VL-T5 the prediction
    "identical, question mark": ("2?", ["2"] * 10, 0.0, 1.0),
    "identical, number word": ("two", ["2"] * 10, 0.0, 1.0),
    "identical, case": ("yes", ["Yes"] * 10, 0.0, 0.0),
    "identical, period in references": ("yes.", ["yes."] * 10, 1.0, 0.0),
    "identical, whitespace": (" 2\t", ["2"] * 10, 1.0, 1.0),
    "identical, newline in references": ("red", ["red\n"] * 10, 1.0, 0.0),  # VL-T5 never strips references
    # references differ: the official rule normalises both sides fully, VL-T5 the references by punctuation only
    "differ, number words in references": ("2", ["two"] * 8 + ["2"] * 2, 1.0, 0.6),
    "differ, none is 0": ("0", ["none"] * 8 + ["0"] * 2, 1.0, 0.6),
    "differ, number word in prediction": ("the three", ["3"] * 9 + ["4"], 1.0, 1.0),
    "differ, articles in references": ("dog", ["the dog"] * 8 + ["dog"] * 2, 1.0, 0.6),
    "differ, contractions in references": ("isn't", ["isnt"] * 8 + ["isn't"] * 2, 1.0, 0.6),
    "differ, case in references": ("yes", ["Yes"] * 8 + ["yes"] * 2, 1.0, 0.6),
    "differ, punctuation": ("yes!", ["yes."] * 9 + ["no"], 1.0, 1.0),
    "differ, comma inside a number": ("1000", ["1,000"] * 9 + ["1000"], 1.0, 1.0),
    "differ, slash between words": ("black white", ["black/white"] * 9 + ["gray"], 1.0, 1.0),
    "leave-one-out, 2 of 10": ("red", ["red"] * 2 + ["blue"] * 8, 0.6, 0.6),
    "leave-one-out, 3 of 10": ("red", ["red"] * 3 + ["blue"] * 7, 0.9, 0.9),
    "leave-one-out, 1 of 10": ("red", ["red"] + ["blue"] * 9, 0.3, 0.3),
    "no match": ("green", ["red"] * 10, 0.0, 0.0),
}


@pytest.mark.parametrize("prediction, answers, official, vl_t5", RULE_CASES.values(), ids=list(RULE_CASES))
def test_both_rules(prediction, answers, official, vl_t5):
    assert vqa_score(prediction, answers) == pytest.approx(official)  # official is the default
    assert vqa_score(prediction, answers, rule="official") == pytest.approx(official)
    assert vqa_score(prediction, answers, rule="vl_t5") == pytest.approx(vl_t5)


def test_unknown_rule_rejected():
    with pytest.raises(ValueError, match="vl_t5"):
        vqa_score("red", ["red"] * 10, rule="vqa2")
    with pytest.raises(ValueError, match="official"):
        VQAScore(rule="lenient")


def test_metric_uses_its_rule():
    official, vl_t5 = VQAScore(), VQAScore(rule="vl_t5")
    for metric in (official, vl_t5):
        metric.update(["two", "2"], [["2"] * 10, ["two"] * 8 + ["2"] * 2])
    assert official.compute()["overall"].item() == pytest.approx((0.0 + 1.0) / 2)
    assert vl_t5.compute()["overall"].item() == pytest.approx((1.0 + 0.6) / 2)


def test_metric_groups_and_merge():
    full = VQAScore(groups=["color", "count"])
    full.update(
        ["red", "2", "blue"], [["red"] * 10, ["3"] * 10, ["blue"] * 2 + ["red"] * 8], ["color", "count", "color"]
    )
    out = full.compute()
    assert out["overall"].item() == pytest.approx((1.0 + 0.0 + 0.6) / 3)
    assert out["color"].item() == pytest.approx(0.8)
    assert out["count"].item() == 0.0
    # Two shards merged (what DDP's sum-reduction does) equal the unsharded metric.
    a, b = VQAScore(groups=["color", "count"]), VQAScore(groups=["color", "count"])
    a.update(["red"], [["red"] * 10], ["color"])
    b.update(["2", "blue"], [["3"] * 10, ["blue"] * 2 + ["red"] * 8], ["count", "color"])
    a.merge_state(b)
    merged = a.compute()
    for k in out:
        assert torch.allclose(merged[k], out[k])


def test_repeated_samples_count_once():
    """A distributed sampler pads shards with repeats; each dataset index counts once."""
    metric = VQAScore(groups=["color"])
    metric.update(["red", "blue"], [["red"] * 10, ["red"] * 10], ["color", "color"], indices=[0, 1])
    metric.update(["red"], [["red"] * 10], ["color"], indices=[0])  # padding repeat of sample 0
    assert metric.compute()["overall"].item() == pytest.approx(0.5)
    unindexed = VQAScore()
    unindexed.update(["red", "red"], [["red"] * 10, ["blue"] * 10])
    assert unindexed.compute()["overall"].item() == pytest.approx(0.5)


def test_empty_references_rejected():
    with pytest.raises(ValueError):
        vqa_score("red", [])


def test_evaluator_reports_tags_beside_question_types():
    """A question counts toward its type, its answer type and each of its tags."""
    from memvp_lab.batch import VLBatch
    from memvp_lab.metrics.evaluators import VQAEvaluator

    empty = torch.zeros(3, 1, dtype=torch.long)
    batch = VLBatch(
        input_ids=empty,
        attention_mask=empty,
        labels=empty,
        prompt_ids=empty,
        prompt_mask=empty,
        visual=None,
        has_image=torch.ones(3),
        weights=torch.ones(3),
        indices=torch.arange(3),
        answers=[["red"] * 10, ["2"] * 10, ["blue"] * 10],
        groups=["color", "count", "color"],
        answer_types=["other", "number", "other"],
        tags=[["objects_1"], ["objects_2"], ["objects_2"]],
    )
    evaluator = VQAEvaluator(["color", "count"], ["other", "number"], tags=["objects_1", "objects_2", "objects_3"])
    evaluator.update(["red", "3", "blue"], batch)
    out = evaluator.compute()
    assert out["vqa_score"] == pytest.approx(2 / 3)
    assert out["vqa_score/color"] == 1.0 and out["vqa_score/count"] == 0.0
    assert out["vqa_score/answer_type/other"] == 1.0 and out["vqa_score/answer_type/number"] == 0.0
    assert out["vqa_score/objects_1"] == 1.0 and out["vqa_score/objects_2"] == 0.5
    assert "vqa_score/objects_3" not in out  # no question of that group
    assert evaluator.breakdown == ("color", "count", "objects_1", "objects_2", "objects_3")
