"""Turns samples into a ``VLBatch`` in the backbone's text layout."""

from __future__ import annotations

import numpy as np
import torch

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.batch import VLBatch


def unlabelled_sample(question_id, index: int = 0, **fields) -> dict:
    """A sample with no reference answer (a user's question about an image) in the fields the
    collator reads; ``fields`` gives ``question``, ``visual`` and any other prompt field."""
    return {
        "index": index,
        "question_id": question_id,
        "target": "",
        "weight": 1.0,
        "answers": [],
        "group": "",
        "answer_type": "",
        "has_image": 1.0,
        **fields,
    }


class VLCollator:
    """Tokenises prompts and targets and stacks visual features.

    Args:
        backbone: gives the tokenizer, the text layout and the architecture family.
        prompt: the task's prompt template over sample fields, e.g. ``"{question}"``.
        max_prompt_tokens: prompts longer than this keep their last tokens (decoder-only) or their
            first ones (encoder input).
        max_target_tokens: targets are cut to this many tokens.
    """

    def __init__(self, backbone: Backbone, prompt: str, max_prompt_tokens: int, max_target_tokens: int) -> None:
        self.tok = backbone.tokenizer
        self.text = backbone.text
        self.encoder_decoder = backbone.is_encoder_decoder
        self.prompt = prompt
        self.max_prompt = max_prompt_tokens
        self.max_target = max_target_tokens
        self.pad = self.tok.pad_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _pad(self, rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), value, dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                if left:
                    out[i, width - len(r) :] = torch.tensor(r)
                else:
                    out[i, : len(r)] = torch.tensor(r)
        return out

    def __call__(self, samples: list[dict]) -> VLBatch:
        prompts = [self.text.prompt.format(prompt=self.prompt.format(**s)) for s in samples]
        targets = [self.text.target.format(target=s["target"], eos=self.tok.eos_token or "") for s in samples]
        if self.encoder_decoder:
            enc = [self.tok(p, add_special_tokens=True)["input_ids"][: self.max_prompt] for p in prompts]
            tgt = [self.tok(t, add_special_tokens=True)["input_ids"][: self.max_target] for t in targets]
            input_ids = self._pad(enc, self.pad)
            labels = self._pad(tgt, -100)
            attention = self._pad([[1] * len(r) for r in enc], 0)
            prompt_ids, prompt_mask = input_ids, attention
        else:
            bos = [self.tok.bos_token_id] if self.text.add_bos else []
            p_ids = [bos + self._ids(p)[-(self.max_prompt - len(bos)) :] for p in prompts]
            t_ids = [self._ids(t)[: self.max_target] for t in targets]
            full = [p + t for p, t in zip(p_ids, t_ids)]
            input_ids = self._pad(full, self.pad)
            labels = self._pad([[-100] * len(p) + t for p, t in zip(p_ids, t_ids)], -100)
            attention = self._pad([[1] * len(r) for r in full], 0)
            prompt_ids = self._pad(p_ids, self.pad, left=True)
            prompt_mask = self._pad([[1] * len(r) for r in p_ids], 0, left=True)
        return VLBatch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            visual=torch.from_numpy(np.stack([s["visual"] for s in samples])).float(),
            has_image=torch.tensor([s["has_image"] for s in samples], dtype=torch.float32),
            weights=torch.tensor([s["weight"] for s in samples], dtype=torch.float32),
            indices=torch.tensor([s["index"] for s in samples], dtype=torch.long),
            question_ids=[s["question_id"] for s in samples],
            answers=[s["answers"] for s in samples],
            groups=[s["group"] for s in samples],
            answer_types=[s["answer_type"] for s in samples],
            tags=[list(s.get("tags", ())) for s in samples],
            pixels=(
                torch.stack([torch.as_tensor(s["pixels"]) for s in samples]).float() if "pixels" in samples[0] else None
            ),
            num_choices=[int(s["num_choices"]) for s in samples] if "num_choices" in samples[0] else [],
        )
