"""Synthetic batches of exact lengths, and the lengths a task's samples have on average."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig

from memvp_lab.batch import VLBatch
from memvp_lab.model.vision_language_model import VisionLanguageModel


@dataclass(frozen=True)
class Lengths:
    """Tokens per sample: the text prompt, the answer (teacher-forced in training, generated in
    inference), and the visual tokens of one image as the vision encoder gives them."""

    prompt: int
    answer: int
    visual: int


def task_lengths(task: DictConfig, visual: int) -> Lengths:
    """The average lengths stored with a task config (``task.lengths``)."""
    lengths = task.get("lengths")
    if lengths is None:
        raise ValueError(
            f"task {task.name!r} has no `lengths` (average prompt / answer tokens): add "
            f"`lengths: {{prompt: P, answer: A}}` to conf/task/{task.name}.yaml"
        )
    return Lengths(int(lengths.prompt), int(lengths.answer), visual)


def synthetic_batch(
    model: VisionLanguageModel, lengths: Lengths, batch_size: int, feature_dim: int, seed: int = 0
) -> VLBatch:
    """A batch of random tokens and features with exactly ``lengths`` (no padding)."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.lm.get_input_embeddings().num_embeddings
    prompt = torch.randint(10, vocab, (batch_size, lengths.prompt), generator=g)
    answer = torch.randint(10, vocab, (batch_size, lengths.answer), generator=g)
    if model.is_encoder_decoder:
        input_ids, labels = prompt, answer
    else:
        input_ids = torch.cat([prompt, answer], dim=1)
        labels = torch.cat([torch.full_like(prompt, -100), answer], dim=1)
    ones = torch.ones(batch_size)
    return VLBatch(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        labels=labels,
        prompt_ids=prompt,
        prompt_mask=torch.ones_like(prompt),
        visual=torch.randn(batch_size, lengths.visual, feature_dim, generator=g),
        has_image=ones,
        weights=ones,
        indices=torch.arange(batch_size),
    )


def text_only(batch: VLBatch) -> VLBatch:
    """The same batch without its visual input: the language model runs on the text alone."""
    return replace(batch, visual=None, pixels=None)


def input_visual_tokens(model: VisionLanguageModel, batch: VLBatch) -> int:
    """Visual tokens a method adds to the LM's input sequence (0 for MemVP and text only)."""
    one = batch.sample(0)
    with torch.no_grad(), model.visual_context(one):
        inputs, prefix = model.prompting_for(one).lm_inputs(
            model.lm, one.input_ids, one.attention_mask, one, generation=False
        )
    if "inputs_embeds" in inputs:
        return inputs["inputs_embeds"].shape[1] - one.input_ids.shape[1]
    return prefix
