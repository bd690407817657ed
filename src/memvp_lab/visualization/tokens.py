"""Where the question's tokens are in a collated prompt, and which of them to draw.

The collator wraps the question in the task's prompt template and the backbone's text format
(e.g. ``"{question}\\nAnswer:"``, special tokens, a BOS) and may cut long prompts; the question's
tokens are found by the character offsets of a fast tokenizer, checked against the collated ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from memvp_lab.data.collate import VLCollator
from memvp_lab.errors import ConfigError


@dataclass
class QuestionTokens:
    """Positions (in the sample's collated prompt) and texts of question tokens."""

    positions: list[int]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.positions)


def prompt_text(collator: VLCollator, sample: dict) -> str:
    """The sample's prompt as the collator writes it before tokenising."""
    try:
        return collator.text.prompt.format(prompt=collator.prompt.format(**sample))
    except KeyError as err:
        raise ConfigError(
            f"the task's prompt template {collator.prompt!r} needs the field {err} that this sample "
            "does not have (an image path gives only a question: pick a dataset sample with "
            "question_id=... for this task)"
        ) from None


def _label(tokenizer, token_id: int) -> str:
    text = tokenizer.decode([token_id]).strip()
    return text or tokenizer.convert_ids_to_tokens(token_id)


def question_tokens(collator: VLCollator, sample: dict, prompt_row: Sequence[int]) -> QuestionTokens:
    """The tokens of ``sample["question"]`` in ``prompt_row`` (the sample's collated prompt ids,
    without padding). Without a fast tokenizer (no offsets), every non-special prompt token."""
    tok = collator.tok
    row = [int(t) for t in prompt_row]
    specials = set(tok.all_special_ids)
    text = prompt_text(collator, sample)
    start = text.find(sample["question"])
    positions: list[int] = []
    if start >= 0 and tok.is_fast:
        end = start + len(sample["question"])
        enc = tok(text, add_special_tokens=collator.encoder_decoder, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        # encoder input: the first tokens are kept; decoder-only: [BOS] + the last ones
        shift = 0 if collator.encoder_decoder else len(row) - len(ids)
        for j, (a, b) in enumerate(offsets):
            p = j + shift
            if 0 <= p < len(row) and row[p] == ids[j] and ids[j] not in specials and a < end and b > start:
                positions.append(p)
    if not positions:
        positions = [p for p, t in enumerate(row) if t not in specials]
    return QuestionTokens(positions, [_label(tok, row[p]) for p in positions])


def choose(tokens: QuestionTokens, wanted: Sequence[int | str] | None) -> QuestionTokens:
    """The tokens to draw: all of them (``wanted`` empty or None), or those named by index among the
    question tokens (negative counts from the end) or by text (case-insensitive, every match)."""
    if not wanted:
        return tokens
    picked: list[int] = []
    for item in wanted:
        if isinstance(item, int):
            if not -len(tokens) <= item < len(tokens):
                raise ConfigError(f"tokens: index {item} is outside the {len(tokens)} question tokens {tokens.labels}")
            picked.append(item % len(tokens))
            continue
        matches = [i for i, label in enumerate(tokens.labels) if label.lower() == str(item).strip().lower()]
        if not matches:
            raise ConfigError(f"tokens: {item!r} is not a question token; the question's tokens are {tokens.labels}")
        picked += matches
    picked = list(dict.fromkeys(picked))
    return QuestionTokens([tokens.positions[i] for i in picked], [tokens.labels[i] for i in picked])
