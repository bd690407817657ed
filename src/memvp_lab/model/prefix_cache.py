"""Reuse of a decoder-only language model's frozen bottom layers across training steps.

When nothing below decoder layer ``k`` trains or is hooked (MemVP with ``method.first_layer=k``:
its memory starts at FFN ``k`` and the text enters the model alone), the hidden states entering
layer ``k`` depend on the token ids only. ``FrozenPrefixCache`` keeps them per distinct sequence,
so a sequence seen before starts at layer ``k``: the forward pass skips ``k`` layers and the
backward pass stops there anyway. The result is the same computation, not an approximation: the
first use compares the cached forward with the full one and raises if they differ (a model family
that does more than ``hidden = embed(ids)`` before its first layer, for instance).

It pays when sequences repeat across steps: templated questions, or several epochs over a data
set small enough to keep the ``k``-th layer states of all its sequences (``max_bytes`` bounds
that). It does not apply to methods that put visual tokens into the input or train every layer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Ends a forward pass once layer ``k``'s input is known."""


def frozen_prefix_layers(decoder_layers: nn.ModuleList, embeddings: nn.Module) -> int:
    """The number of leading decoder layers that neither train nor carry hooks (0 if the
    embeddings train)."""
    if any(p.requires_grad for p in embeddings.parameters()):
        return 0
    for i, layer in enumerate(decoder_layers):
        for module in layer.modules():
            hooked = module._forward_hooks or module._forward_pre_hooks
            if hooked or any(p.requires_grad for p in module.parameters(recurse=False)):
                return i
    return len(decoder_layers)


def is_right_padded(attention_mask: torch.Tensor) -> bool:
    """Every row is ones followed by zeros (positions then match the unpadded sequence)."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool(torch.equal(attention_mask.bool(), positions.unsqueeze(0) < lengths))


class FrozenPrefixCache:
    """Hidden states entering decoder layer ``k``, per distinct token sequence (LRU).

    Args:
        base_model: the decoder-only transformer (``lm.base_model``) with ``.layers``.
        num_layers: ``k``, the frozen, hook-free leading layers to skip.
        max_bytes: size of the kept states; the least recently used texts are dropped beyond it.
        verify_tolerance: largest absolute difference accepted by the first-use check.
    """

    def __init__(
        self, base_model: nn.Module, num_layers: int, max_bytes: int = 2 << 30, verify_tolerance: float = 1e-4
    ) -> None:
        if not 0 < num_layers < len(base_model.layers):
            raise ValueError(f"FrozenPrefixCache: num_layers={num_layers} must lie in (0, {len(base_model.layers)})")
        self.base_model = base_model
        self.num_layers = num_layers
        self.max_bytes = max_bytes
        self.bytes = 0
        self.verify_tolerance = verify_tolerance
        self.entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.verified = False

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    # ---------------------------------------------------------------- pieces
    @torch.no_grad()
    def _prefix_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Runs the model up to the input of layer ``k``, (B, L, d)."""
        captured: list[torch.Tensor] = []

        def capture(module, args, kwargs):
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise _Stop

        handle = self.base_model.layers[self.num_layers].register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0]

    def _lookup(self, input_ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """(B, L, d) layer-``k`` inputs, computing the sequences not cached yet (pads are zero)."""
        ids_cpu = input_ids.cpu()  # one device-to-host copy for the whole batch
        keys = [ids_cpu[i, :n].numpy().tobytes() for i, n in enumerate(lengths)]
        first_row = {key: i for i, key in reversed(list(enumerate(keys)))}
        missing = [i for key, i in first_row.items() if key not in self.entries]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            width = max(lengths[i] for i in missing)
            ids = input_ids[missing, :width]
            mask = torch.arange(width, device=ids.device).unsqueeze(0) < torch.tensor(
                [lengths[i] for i in missing], device=ids.device
            ).unsqueeze(1)
            states = self._prefix_states(ids, mask.long())
            for row, i in enumerate(missing):
                kept = states[row, : lengths[i]].detach().clone()
                self.entries[keys[i]] = kept
                self.bytes += kept.nbytes
        rows = []
        for key in keys:
            self.entries.move_to_end(key)
            rows.append(self.entries[key])
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            self.bytes -= self.entries.popitem(last=False)[1].nbytes
        return nn.utils.rnn.pad_sequence(rows, batch_first=True)

    @contextmanager
    def _upper_layers(self) -> Iterator[None]:
        """The model's layer list cut to layers ``k..`` for the duration of the block."""
        layers = self.base_model.layers
        self.base_model.layers = nn.ModuleList(list(layers)[self.num_layers :])
        try:
            yield
        finally:
            self.base_model.layers = layers

    # ------------------------------------------------------------------ call
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``base_model(input_ids, attention_mask).last_hidden_state`` for a right-padded batch."""
        lengths = attention_mask.sum(dim=1).tolist()
        states = self._lookup(input_ids, lengths)
        width = input_ids.shape[1]
        if states.shape[1] < width:
            states = nn.functional.pad(states, (0, 0, 0, width - states.shape[1]))
        rng = None if self.verified else _rng_state(input_ids.device)
        with self._upper_layers():
            hidden = self.base_model(
                inputs_embeds=states, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
        if rng is not None:
            self._verify(input_ids, attention_mask, hidden, rng)
        return hidden

    def _verify(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor, rng) -> None:
        """The full forward, with the random state the cached one started from (same dropout)."""
        after = _rng_state(input_ids.device)
        _set_rng_state(input_ids.device, rng)
        try:
            with torch.no_grad():
                full = self.base_model(
                    input_ids=input_ids, attention_mask=attention_mask, use_cache=False
                ).last_hidden_state
        finally:
            _set_rng_state(input_ids.device, after)
        real = attention_mask.bool()
        diff = (full[real] - hidden.detach()[real]).abs().max().item()
        if diff > self.verify_tolerance:
            raise RuntimeError(
                f"FrozenPrefixCache: starting at layer {self.num_layers} from cached states changed the output "
                f"by {diff:.2e} (> {self.verify_tolerance:.0e}); this model does more than run its layers "
                f"on the token embeddings. Set method.cache_frozen_prefix=false"
            )
        log.info(
            "frozen prefix cache: layers 0-%d reused, checked against the full forward (max diff %.1e)",
            self.num_layers - 1,
            diff,
        )
        self.verified = True


def _rng_state(device: torch.device):
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(device: torch.device, state) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
