"""VQA accuracy under the two rules VQA numbers are published with.

``rule="official"`` (default) is the current official evaluation: GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at commit a013f00 ("Fixed processing answers
bug", 2021). The prediction and the ten human answers lose newlines, tabs and outer spaces; then,
only when the ten answers are not all identical, the prediction and every answer go through
punctuation processing and then number-word / article / contraction processing. When all ten
are identical nothing is normalised, so "2?" scores 0 against ten "2".

``rule="vl_t5"`` is the evaluator of VL-T5 (j-min/VL-T5, ``VL-T5/src/vqa_data.py``,
``VQAEvaluator.evaluate_raw``), which VL-Adapter and VL-PET inherit and which scored the paper's
Table 1 VQAv2 column. It follows the official script as it was before that fix: the prediction is
always fully normalised; the answers are left raw (not even stripped) and only
punctuation-processed, and only when they are not all identical.

Both score a question as the mean over the ten leave-one-out subsets of ``min(1, #matches / 3)``.
Both scripts pass ``re.UNICODE`` (= 32) as the ``count`` argument of the period-stripping
``re.sub``, so at most 32 periods are removed; that is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from memvp_lab.metrics.grouped import GroupedMean

# Contractions written without (some of) their apostrophes, as the official table lists them.
_CONTRACTION_PAIRS = """
aint:ain't arent:aren't cant:can't couldve:could've couldnt:couldn't couldn'tve:couldn't've
couldnt've:couldn't've didnt:didn't doesnt:doesn't dont:don't hadnt:hadn't hadnt've:hadn't've
hadn'tve:hadn't've hasnt:hasn't havent:haven't hed:he'd hed've:he'd've he'dve:he'd've hes:he's
howd:how'd howll:how'll hows:how's Id've:I'd've I'dve:I'd've Im:I'm Ive:I've isnt:isn't itd:it'd
itd've:it'd've it'dve:it'd've itll:it'll let's:let's maam:ma'am mightnt:mightn't
mightnt've:mightn't've mightn'tve:mightn't've mightve:might've mustnt:mustn't mustve:must've
neednt:needn't notve:not've oclock:o'clock oughtnt:oughtn't ow's'at:'ow's'at 'ows'at:'ow's'at
'ow'sat:'ow's'at shant:shan't shed've:she'd've she'dve:she'd've she's:she's shouldve:should've
shouldnt:shouldn't shouldnt've:shouldn't've shouldn'tve:shouldn't've somebody'd:somebodyd
somebodyd've:somebody'd've somebody'dve:somebody'd've somebodyll:somebody'll somebodys:somebody's
someoned:someone'd someoned've:someone'd've someone'dve:someone'd've someonell:someone'll
someones:someone's somethingd:something'd somethingd've:something'd've
something'dve:something'd've somethingll:something'll thats:that's thered:there'd
thered've:there'd've there'dve:there'd've therere:there're theres:there's theyd:they'd
theyd've:they'd've they'dve:they'd've theyll:they'll theyre:they're theyve:they've twas:'twas
wasnt:wasn't wed've:we'd've we'dve:we'd've weve:we've werent:weren't whatll:what'll
whatre:what're whats:what's whatve:what've whens:when's whered:where'd wheres:where's
whereve:where've whod:who'd whod've:who'd've who'dve:who'd've wholl:who'll whos:who's
whove:who've whyll:why'll whyre:why're whys:why's wont:won't wouldve:would've wouldnt:wouldn't
wouldnt've:wouldn't've wouldn'tve:wouldn't've yall:y'all yall'll:y'all'll y'allll:y'all'll
yall'd've:y'all'd've y'alld've:y'all'd've y'all'dve:y'all'd've youd:you'd youd've:you'd've
you'dve:you'd've youll:you'll youre:you're youve:you've
"""
CONTRACTIONS: dict[str, str] = dict(pair.split(":", 1) for pair in _CONTRACTION_PAIRS.split())
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP_COUNT = int(re.UNICODE)
VQA_RULES = ("official", "vl_t5")


def process_punctuation(text: str) -> str:
    """Removes or spaces out punctuation exactly as the official evaluation does."""
    out = text
    strip_all = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if strip_all or (p + " " in text) or (" " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # Both scripts call periodStrip.sub("", out, re.UNICODE): the flag lands in ``count`` (32).
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-cases, maps number words to digits, drops articles, restores contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """Whitespace clean-up, punctuation, then number words / articles / contractions: what both
    rules apply to a prediction (the official one only when the references differ)."""
    return process_digit_article(process_punctuation(_clean(answer)))


def _leave_one_out(prediction: str, refs: Sequence[str]) -> float:
    total = 0.0
    for i in range(len(refs)):
        matches = sum(1 for j, ref in enumerate(refs) if j != i and ref == prediction)
        total += min(1.0, matches / 3.0)
    return total / len(refs)


def vqa_score(prediction: str, answers: Sequence[str], rule: str = "official") -> float:
    """VQA accuracy of one prediction against the human answers (usually ten).

    Args:
        prediction: the model's answer, raw.
        answers: the human answers, raw.
        rule: ``"official"`` (GT-Vision-Lab ``vqaEval.py``, current) or ``"vl_t5"`` (VL-T5's
            ``evaluate_raw``); see the module docstring.

    Returns:
        A value in [0, 1].
    """
    if not answers:
        raise ValueError("vqa_score needs at least one reference answer")
    if rule == "official":
        pred, refs = _clean(prediction), [_clean(a) for a in answers]
        if len(set(refs)) > 1:
            pred = normalize_answer(pred)
            refs = [normalize_answer(a) for a in refs]
        return _leave_one_out(pred, refs)
    if rule == "vl_t5":
        refs = list(answers)
        if len(set(refs)) > 1:
            refs = [process_punctuation(a) for a in refs]
        return _leave_one_out(normalize_answer(prediction), refs)
    raise ValueError(f"unknown VQA rule {rule!r}: choose one of {VQA_RULES}")


class VQAScore(GroupedMean):
    """Mean VQA accuracy, overall and per group (question type, answer type, ...).

    ``update`` takes predictions, their reference answers, optional group names and the
    samples' dataset indices; each dataset index counts once across processes (see
    ``GroupedMean``). Samples updated without indices are always counted.

    Args:
        groups: the group names reported separately (e.g. the question types); a sample whose
            group is not listed only counts toward the overall score.
        rule: the VQA rule, ``"official"`` or ``"vl_t5"`` (see ``vqa_score``).

    ``update``'s ``groups`` gives each sample one group name or a list of them (tags).
    """

    def __init__(self, groups: Sequence[str] = (), rule: str = "official", **kwargs) -> None:
        if rule not in VQA_RULES:
            raise ValueError(f"unknown VQA rule {rule!r}: choose one of {VQA_RULES}")
        super().__init__(groups=groups, **kwargs)
        self.rule = rule

    def update(
        self,
        predictions: Sequence[str],
        answers: Sequence[Sequence[str]],
        groups: Sequence[str | Sequence[str]] | None = None,
        indices: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        if len(predictions) != len(answers):
            raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
        memberships = [[g] if isinstance(g, str) else list(g) for g in groups] if groups is not None else None
        self.add([vqa_score(p, r, self.rule) for p, r in zip(predictions, answers)], memberships, indices)
