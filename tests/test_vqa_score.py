"""The official VQA accuracy, checked against values worked out by hand."""

import pytest
import torch

from memvp_lab.metrics.vqa_score import VQAScore, normalize_answer, process_punctuation, vqa_score


@pytest.mark.parametrize("raw, expected", [
    ("Two", "2"),                # number word, case
    ("the dog.", "dog"),         # article, trailing period
    ("a red car", "red car"),
    ("isnt", "isn't"),           # contraction restored
    ("yes!", "yes"),             # '!' stripped
    ("1,000", "1000"),           # comma inside a number: punctuation removed, not spaced
    ("black/white", "black white"),  # '/' between words becomes a space
    ("3.5", "3.5"),              # a decimal point survives
    ("  none\n", "0"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_leave_one_out_average():
    # 2 of 10 humans agree: the 2 subsets without one of them have 1 match (1/3), the other 8 have 2 (2/3).
    assert vqa_score("red", ["red"] * 2 + ["blue"] * 8) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_score("red", ["red"] * 3 + ["blue"] * 7) == pytest.approx((3 * (2 / 3) + 7 * 1.0) / 10)
    assert vqa_score("red", ["red"] * 4 + ["blue"] * 6) == 1.0
    assert vqa_score("green", ["red"] * 10) == 0.0


def test_prediction_is_normalised_references_only_punctuation():
    # The prediction "Two" becomes "2"; references are compared as written (after punctuation).
    assert vqa_score("Two", ["2"] * 10) == 1.0
    assert vqa_score("2", ["two"] * 4 + ["2"] * 6) == 1.0      # 6 literal "2" references
    assert vqa_score("2", ["two"] * 8 + ["2"] * 2) == pytest.approx(0.6)  # "two" references are not mapped


def test_identical_references_are_not_normalised():
    # All ten references identical: left as they are, so a capitalised reference never matches.
    assert vqa_score("yes", ["Yes"] * 10) == 0.0
    # Not all identical: punctuation is processed ('yes.' -> 'yes'), case is not.
    assert vqa_score("yes", ["yes."] * 9 + ["no"]) == 1.0
    assert process_punctuation("yes.") == "yes"


def test_metric_groups_and_merge():
    full = VQAScore(groups=["color", "count"])
    full.update(["red", "2", "blue"], [["red"] * 10, ["3"] * 10, ["blue"] * 2 + ["red"] * 8], ["color", "count", "color"])
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
    from memvp_lab.evaluation import VQAEvaluator

    empty = torch.zeros(3, 1, dtype=torch.long)
    batch = VLBatch(input_ids=empty, attention_mask=empty, labels=empty, prompt_ids=empty, prompt_mask=empty,
                    visual=None, has_image=torch.ones(3), weights=torch.ones(3), indices=torch.arange(3),
                    answers=[["red"] * 10, ["2"] * 10, ["blue"] * 10], groups=["color", "count", "color"],
                    answer_types=["other", "number", "other"], tags=[["objects_1"], ["objects_2"], ["objects_2"]])
    evaluator = VQAEvaluator(["color", "count"], ["other", "number"], tags=["objects_1", "objects_2", "objects_3"])
    evaluator.update(["red", "3", "blue"], batch)
    out = evaluator.compute()
    assert out["vqa_score"] == pytest.approx(2 / 3)
    assert out["vqa_score/color"] == 1.0 and out["vqa_score/count"] == 0.0
    assert out["vqa_score/answer_type/other"] == 1.0 and out["vqa_score/answer_type/number"] == 0.0
    assert out["vqa_score/objects_1"] == 1.0 and out["vqa_score/objects_2"] == 0.5
    assert "vqa_score/objects_3" not in out  # no question of that group
    assert evaluator.breakdown == ("color", "count", "objects_1", "objects_2", "objects_3")
