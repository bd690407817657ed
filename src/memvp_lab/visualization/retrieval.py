"""Which visual memory slots the question tokens retrieve, and the answer when they are blocked.

Every FFN holding visual memory computes activated retrieval weights ``act(u K^T)`` of shape
(B, L, slots) for its L input positions; ``VisualMemory.bind`` hands them to an ``observer``. The
first ``num_prompt_tokens`` slots are the visual grid cells, in the row-major order the vision
encoder flattens its (C, h, w) map in; the remaining slots are position-only entries. Visual-knowledge
locating (paper Fig. 5) averages the weights of the visual slots over the FFNs; distortion (paper
Fig. 6) sets the activations of the most-retrieved slots to zero (``bind``'s ``blocked`` mask) and
generates again. Everything here is tensors in, tensors out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from memvp_lab.batch import VLBatch
from memvp_lab.errors import ConfigError
from memvp_lab.methods.memvp.memory import ScoreObserver, VisualMemory, memory_in
from memvp_lab.model.vision_language_model import VisionLanguageModel


class NoVisualMemory(ConfigError):
    """The run's method has no visual memory slots to locate or block."""


def memory_of(model: VisionLanguageModel) -> VisualMemory | None:
    """The model's ``VisualMemory`` (see ``memory_in``), or None."""
    return memory_in(model.prompting)


def visual_memory(model: VisionLanguageModel, method_name: str) -> VisualMemory:
    """The model's ``VisualMemory``; refuses, naming the method, a model without visual slots."""
    memory = memory_of(model)
    if memory is None:
        raise NoVisualMemory(
            f"method={method_name} has no visual memory (its visual path is {type(model.prompting).__name__}); "
            "visual-knowledge locating and distortion need a memory-space run (method=memvp or adem_vl)"
        )
    if memory.projector is None:
        raise NoVisualMemory(
            f"method={method_name} with method.ablation={memory.ablation.value} has only "
            "position-only memory slots: no visual slot to locate or block"
        )
    return memory


def grid_shape(memory: VisualMemory, grid: bool = True) -> tuple[int, int]:
    """(rows, columns) of the visual slots that form the image grid, which come first (all the
    visual slots for MemVP; ADEM-VL's first view)."""
    tokens = memory.grid_tokens
    side = math.isqrt(tokens)
    if not grid or side * side != tokens:
        raise NoVisualMemory(
            f"the visual memory holds {tokens} visual slots that are not a square image grid "
            f"(vision.grid={grid}); heat maps over the image need grid features"
        )
    return side, side


@contextmanager
def bound_with(
    memory: VisualMemory, *, observer: ScoreObserver | None = None, blocked: torch.Tensor | None = None
) -> Iterator[None]:
    """Inside the block, every call of the model (``forward``, ``generate``) binds its visual memory
    with ``observer`` and ``blocked`` as well.

    ``VisionLanguageModel`` binds the memory through the prompting hook ``memory.context(batch)``;
    this shadows that hook on the instance for the duration of the block.
    """

    def context(batch: VLBatch):
        return memory.bind(batch.visual, batch.has_image, observer=observer, blocked=blocked)

    memory.context = context
    try:
        yield
    finally:
        del memory.context


def prompt_states(
    model: VisionLanguageModel,
    batch: VLBatch,
    *,
    memory: bool = True,
    observer: ScoreObserver | None = None,
    blocked: torch.Tensor | None = None,
) -> torch.Tensor:
    """The prompts through the language model once: the last hidden states of a decoder-only model,
    the encoder's of an encoder-decoder (the question reaches only the encoder there).

    ``memory=False`` runs the plain language model (visual memory not bound).
    """
    batch = model.with_visual(batch)
    with torch.no_grad():
        if not memory:
            return _prompt_pass(model, batch)
        with bound_with(memory_of(model), observer=observer, blocked=blocked), model.prompting.context(batch):
            return _prompt_pass(model, batch)


def _prompt_pass(model: VisionLanguageModel, batch: VLBatch) -> torch.Tensor:
    inputs, _ = model.prompting.lm_inputs(model.lm, batch.prompt_ids, batch.prompt_mask, batch, generation=False)
    if model.is_encoder_decoder:
        return model.lm.get_encoder()(**inputs).last_hidden_state
    return model.lm.base_model(**inputs).last_hidden_state


def text_positions(model: VisionLanguageModel, scores: torch.Tensor, text: int) -> torch.Tensor:
    """``scores`` (..., L, slots) at the ``text`` prompt positions only: visual tokens a method puts
    in the input (ADEM-VL's one token) come before the text of a decoder-only model and after it
    in an encoder."""
    return scores[..., :text, :] if model.is_encoder_decoder else scores[..., scores.shape[-2] - text :, :]


@dataclass
class Scores:
    """Activated retrieval weights over the prompt, one entry per FFN that saw it.

    Attributes:
        values: (sites, B, L, slots), in the memory's site order.
        sites: the FFNs' module names.
    """

    values: torch.Tensor
    sites: list[str]


def capture_scores(model: VisionLanguageModel, batch: VLBatch) -> Scores:
    """The retrieval weights every memory FFN computes for the prompt positions."""
    memory = memory_of(model)
    seen: dict[int, torch.Tensor] = {}
    text = batch.prompt_ids.shape[1]

    def observe(index: int, scores: torch.Tensor) -> None:
        seen[index] = text_positions(model, scores.detach().float().cpu(), text)

    prompt_states(model, batch, observer=observe)
    if not seen:
        raise NoVisualMemory(
            "no FFN with visual memory sees the question: this encoder-decoder has memory only "
            "in its decoder (method.layers=decoder), and the question passes through the encoder"
        )
    order = sorted(seen)
    return Scores(torch.stack([seen[i] for i in order]), [memory.sites[i].name for i in order])


def token_maps(
    scores: torch.Tensor, positions: Sequence[int], grid: tuple[int, int], per_layer: bool = False
) -> torch.Tensor:
    """Heat maps of the visual slots for the prompt ``positions`` of one sample.

    Args:
        scores: (sites, L, slots) retrieval weights of one sample.
        positions: prompt positions of the chosen tokens.
        grid: (rows, columns) of the visual slots, which come first.
    Returns:
        (tokens, rows, columns) averaged over the sites, or (sites, tokens, rows, columns).
    """
    rows, cols = grid
    maps = scores[:, list(positions), : rows * cols].reshape(scores.shape[0], len(positions), rows, cols)
    return maps if per_layer else maps.mean(dim=0)


def slot_weights(scores: torch.Tensor, positions: Sequence[int], num_visual: int) -> torch.Tensor:
    """(num_visual,) retrieval weight of each visual slot averaged over ``positions`` and sites."""
    return scores[:, list(positions), :num_visual].mean(dim=(0, 1))


def top_slots(scores: torch.Tensor, positions: Sequence[int], num_visual: int, k: int) -> torch.Tensor:
    """The ``k`` most-retrieved visual slots (see ``slot_weights``), most retrieved first."""
    if not 0 <= k <= num_visual:
        raise ConfigError(f"block_top_k={k}: must be between 0 and the {num_visual} visual slots")
    return slot_weights(scores, positions, num_visual).topk(k).indices


def blocked_mask(
    memory: VisualMemory,
    slots: Sequence[int] | torch.Tensor,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``bind``'s (batch_size, num_slots) bool mask with ``slots`` blocked in every sample."""
    mask = torch.zeros(batch_size, memory.num_slots, dtype=torch.bool, device=device)
    mask[:, torch.as_tensor(slots, dtype=torch.long)] = True
    return mask


def generate(
    model: VisionLanguageModel,
    batch: VLBatch,
    generation: dict,
    *,
    blocked: torch.Tensor | None = None,
    observer: ScoreObserver | None = None,
) -> list[str]:
    """``model.generate`` with the memory's ``blocked`` slots (and an ``observer``), if given."""
    if blocked is None and observer is None:
        return model.generate(batch, **generation)
    with bound_with(memory_of(model), observer=observer, blocked=blocked):
        return model.generate(batch, **generation)


@dataclass
class Located:
    """Retrieval of one question's tokens and the answers with and without the top slots.

    Attributes:
        scores: (sites, L, slots) retrieval weights of the prompt.
        sites: names of the FFNs in ``scores``.
        maps: (tokens, rows, columns) averaged over the sites.
        layer_maps: (sites, tokens, rows, columns).
        answer: the generated answer.
        blocked: the blocked visual slots (most retrieved first); empty without blocking.
        answer_blocked: the answer with them blocked, or None.
    """

    scores: torch.Tensor
    sites: list[str]
    maps: torch.Tensor
    layer_maps: torch.Tensor
    answer: str
    blocked: list[int]
    answer_blocked: str | None


def locate(
    model: VisionLanguageModel,
    batch: VLBatch,
    positions: Sequence[int],
    grid: tuple[int, int],
    generation: dict,
    block_top_k: int = 0,
) -> Located:
    """Heat maps of the tokens at ``positions`` of a one-sample ``batch`` and, with ``block_top_k``,
    the answer after blocking that many most-retrieved visual slots (ranked over the same tokens)."""
    if len(batch) != 1:
        raise ValueError(f"locate takes a one-sample batch, got {len(batch)} samples")
    if not positions:
        raise ValueError("no token chosen")
    captured = capture_scores(model, batch)
    scores = captured.values[:, 0]
    layer_maps = token_maps(scores, positions, grid, per_layer=True)
    answer = generate(model, batch, generation)[0]
    blocked: list[int] = []
    answer_blocked = None
    if block_top_k:
        blocked = top_slots(scores, positions, grid[0] * grid[1], block_top_k).tolist()
        mask = blocked_mask(memory_of(model), blocked, device=batch.prompt_ids.device)
        answer_blocked = generate(model, batch, generation, blocked=mask)[0]
    return Located(scores, captured.sites, layer_maps.mean(dim=0), layer_maps, answer, blocked, answer_blocked)
