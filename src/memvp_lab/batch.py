"""The batch every method consumes: token ids, visual features and evaluation metadata."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class VLBatch:
    """A collated batch.

    Decoder-only backbones: ``input_ids`` is prompt + target, right-padded, with ``labels`` -100
    on prompt and padding; ``prompt_ids`` / ``prompt_mask`` hold the prompts alone, left-padded,
    for generation. Encoder-decoder backbones: ``input_ids`` is the prompt (encoder input) and
    ``labels`` the target (decoder); ``prompt_ids`` is ``input_ids``.

    Attributes:
        visual: (B, m, C) visual features; ``has_image``: (B,) 1.0 / 0.0. With ``pixels`` given
            and an on-the-fly vision encoder, ``visual`` is recomputed from them. Both None: a
            text-only batch, which the language model runs alone (a reference in benchmarks).
        weights: (B,) loss weight per sample (the VQA soft score of the sampled answer).
        indices: (B,) the samples' positions in their dataset (metrics count each once).
        question_ids, answers, groups, answer_types: evaluation metadata (not moved to devices).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    visual: torch.Tensor | None
    has_image: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    question_ids: list = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    answer_types: list[str] = field(default_factory=list)
    pixels: torch.Tensor | None = None  # (B, 3, H, W) images, when the vision encoder runs on the fly
    # further groups a sample counts toward (ScienceQA categories, shapes_vqa object counts)
    tags: list[list[str]] = field(default_factory=list)
    num_choices: list[int] = field(default_factory=list)  # options of a multiple-choice question

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def sample(self, i: int) -> VLBatch:
        """Sample ``i`` alone, with its padding removed (used for exact per-sample FLOPs)."""
        keep = self.attention_mask[i].bool()
        # Targets are right-padded with -100 (and, decoder-only, the prompt is -100 too): keep
        # everything up to the last target token.
        label_len = int((self.labels[i] != -100).nonzero().max()) + 1
        prompt_keep = self.prompt_mask[i].bool()
        return replace(
            self,
            input_ids=self.input_ids[i][keep][None],
            attention_mask=self.attention_mask[i][keep][None],
            labels=self.labels[i, :label_len][None],
            prompt_ids=self.prompt_ids[i][prompt_keep][None],
            prompt_mask=self.prompt_mask[i][prompt_keep][None],
            visual=None if self.visual is None else self.visual[i : i + 1],
            pixels=None if self.pixels is None else self.pixels[i : i + 1],
            has_image=self.has_image[i : i + 1],
            weights=self.weights[i : i + 1],
            indices=self.indices[i : i + 1],
            question_ids=self.question_ids[i : i + 1],
            answers=self.answers[i : i + 1],
            groups=self.groups[i : i + 1],
            answer_types=self.answer_types[i : i + 1],
            tags=self.tags[i : i + 1],
            num_choices=self.num_choices[i : i + 1],
        )
