"""The collator lays prompts and targets out as each architecture needs."""

from __future__ import annotations

import numpy as np
import torch

from helpers import tiny
from memvp_lab.data.collate import VLCollator


def _samples():
    return [
        {
            "question": "What color is the circle?",
            "target": "red",
            "weight": 1.0,
            "answers": ["red"] * 10,
            "group": "color",
            "answer_type": "other",
            "question_id": 1,
            "index": 0,
            "visual": np.zeros((8, 32), np.float16),
            "has_image": 1.0,
        },
        {
            "question": "How many?",
            "target": "2",
            "weight": 0.6,
            "answers": ["2"] * 10,
            "group": "count",
            "answer_type": "number",
            "question_id": 2,
            "index": 1,
            "visual": np.ones((8, 32), np.float16),
            "has_image": 1.0,
        },
    ]


def test_decoder_only_layout():
    backbone = tiny("llama")
    tok = backbone.tokenizer
    batch = VLCollator(backbone, "{question}", max_prompt_tokens=64, max_target_tokens=8)(_samples())
    for i, s in enumerate(_samples()):
        n = int(batch.attention_mask[i].sum())
        ids = batch.input_ids[i, :n].tolist()
        labels = batch.labels[i, :n]
        prompt_len = int((labels == -100).sum())
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids[1:prompt_len]) == f"{s['question']} Answer:"
        assert tok.decode(labels[prompt_len:].tolist()) == f" {s['target']}</s>"
        assert (batch.labels[i, n:] == -100).all() and (batch.input_ids[i, n:] == tok.pad_token_id).all()
        # Generation prompts: the same prompt tokens, left-padded.
        p, width = int(batch.prompt_mask[i].sum()), batch.prompt_ids.shape[1]
        assert batch.prompt_ids[i, -p:].tolist() == ids[:prompt_len]
        assert (batch.prompt_mask[i, : width - p] == 0).all() and (batch.prompt_mask[i, width - p :] == 1).all()
        assert (batch.prompt_ids[i, : width - p] == tok.pad_token_id).all()
    assert int(batch.prompt_mask.sum(1).max()) == batch.prompt_ids.shape[1]  # the longest prompt fills the width
    assert torch.allclose(batch.weights, torch.tensor([1.0, 0.6]))
    assert batch.visual.dtype == torch.float32 and batch.visual.shape == (2, 8, 32)


def test_encoder_decoder_layout():
    backbone = tiny("bart")
    tok = backbone.tokenizer
    batch = VLCollator(backbone, "{question}", max_prompt_tokens=64, max_target_tokens=8)(_samples())
    assert tok.decode(batch.input_ids[0][batch.attention_mask[0].bool()].tolist()) == "<s>What color is the circle?</s>"
    target = batch.labels[1][batch.labels[1] != -100].tolist()
    assert tok.decode(target) == "<s>2</s>"
    assert torch.equal(batch.prompt_ids, batch.input_ids)


def test_sample_drops_padding():
    backbone = tiny("llama")
    batch = VLCollator(backbone, "{question}", max_prompt_tokens=64, max_target_tokens=8)(_samples())
    one = batch.sample(1)
    n = int(batch.attention_mask[1].sum())
    assert one.input_ids.shape == (1, n) and one.labels.shape == (1, n)
    assert int(one.prompt_mask.sum()) == one.prompt_ids.shape[1]
