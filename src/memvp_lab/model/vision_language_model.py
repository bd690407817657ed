"""A frozen language model plus a method's trainable modules, as one ``nn.Module``.

A method plugs in through two parts: a *prompting* module that decides how visual features reach
the language model (MemVP binds visual memory to the FFNs for the duration of each call;
input-space methods turn them into extra input tokens), and modules it injected into the language
model (adapters, LoRA), named so they can be made trainable. The training loss and generation are
written once here, for every method.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from memvp_lab.backbones.backbone import Backbone
from memvp_lab.batch import VLBatch
from memvp_lab.errors import ConfigError
from memvp_lab.model.prefix_cache import FrozenPrefixCache, frozen_prefix_layers, is_right_padded
from memvp_lab.model.prompting import Prompting

log = logging.getLogger(__name__)

TEXT_ONLY = Prompting()  # no visual path: the language model on the text alone

NORM_CLASS_SUFFIXES = ("LayerNorm", "RMSNorm")
UNFREEZE_PARTS = ("layer_norms", "encoder_layer_norms", "biases", "all")


def norm_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Normalisation layers, recognised by type (``nn.LayerNorm`` or a ``*LayerNorm``/``*RMSNorm`` class)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(NORM_CLASS_SUFFIXES):
            yield name, module


class VisionLanguageModel(nn.Module):
    """The language model, frozen, plus the method's prompting module, trainable.

    Args:
        backbone: the loaded language model.
        prompting: the method's visual path (see ``Prompting``); all of it trains.
        injected: dotted paths (inside the language model) of modules the method added to it;
            all of them train.
        unfreeze: extra language-model parts to train, by structure: ``layer_norms``,
            ``encoder_layer_norms``, ``biases`` or ``all``.
        vision_tower: a vision encoder run on the fly (for methods that train adapters inside
            it); its own ``requires_grad`` flags are kept. ``None``: features come pre-extracted.
        cache_frozen_prefix: reuse the hidden states that enter the first decoder layer with
            anything trainable or hooked, per distinct text (``FrozenPrefixCache``); decoder-only.
    """

    def __init__(
        self,
        backbone: Backbone,
        prompting: Prompting,
        injected: Sequence[str] = (),
        unfreeze: Sequence[str] = (),
        vision_tower: nn.Module | None = None,
        cache_frozen_prefix: bool = False,
    ) -> None:
        super().__init__()
        self.lm = backbone.model
        self.prompting = prompting
        self.vision_tower = vision_tower
        self.tokenizer = backbone.tokenizer
        self.is_encoder_decoder = backbone.is_encoder_decoder
        self.injected = tuple(injected)
        self.lm.requires_grad_(False)
        self.prompting.requires_grad_(True)
        for name in self.injected:
            self.lm.get_submodule(name).requires_grad_(True)
        unfrozen = self._unfreeze(unfreeze)
        if unfrozen:
            log.info("also training %d LM tensors: %s ...", len(unfrozen), ", ".join(unfrozen[:3]))
        self.prefix_cache = self._prefix_cache() if cache_frozen_prefix else None

    def _prefix_cache(self) -> FrozenPrefixCache:
        base = self.lm.base_model
        layers = getattr(base, "layers", None)
        if self.is_encoder_decoder or layers is None:
            raise ConfigError(
                "method.cache_frozen_prefix=true needs a decoder-only backbone with a .layers list; "
                "set method.cache_frozen_prefix=false"
            )
        k = frozen_prefix_layers(layers, self.lm.get_input_embeddings())
        if k == 0 or k == len(layers):
            raise ConfigError(
                f"method.cache_frozen_prefix=true, but {'no' if k == 0 else 'every'} leading decoder layer is free of "
                "trainable or hooked modules; it pays for MemVP with method.first_layer>0 and nothing unfrozen. "
                "Set method.cache_frozen_prefix=false"
            )
        log.info(
            "frozen prefix cache: decoder layers 0-%d are frozen and unhooked; their output is reused per text", k - 1
        )
        return FrozenPrefixCache(base, k)

    def _unfreeze(self, parts: Iterable[str]) -> list[str]:
        names: list[str] = []
        for part in parts:
            if part == "all":
                self.lm.requires_grad_(True)
                names.append("lm.*")
            elif part == "layer_norms":
                for name, module in norm_modules(self.lm):
                    module.requires_grad_(True)
                    names.append(f"lm.{name}")
            elif part == "encoder_layer_norms":
                # by name, as VL-PET selects them: encoder modules named *layer_norm* / *layernorm*
                for name, module in norm_modules(self.lm):
                    if re.search(r"(^|\.)encoder\.", name) and re.search(r"layer_?norm", name):
                        module.requires_grad_(True)
                        names.append(f"lm.{name}")
            elif part == "biases":
                for name, module in self.lm.named_modules():
                    bias = getattr(module, "bias", None)
                    if isinstance(bias, nn.Parameter):
                        bias.requires_grad_(True)
                        names.append(f"lm.{name}.bias")
            else:
                raise ValueError(f"method.unfreeze entry {part!r}: expected one of {UNFREEZE_PARTS}")
        return names

    # ------------------------------------------------------------------ parameters
    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters (each shared tensor counted once)."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for _, p in self.trainable_named_parameters())
        return {"trainable": trainable, "total": total}

    # ---------------------------------------------------------------------- forward
    def prompting_for(self, batch: VLBatch) -> Prompting:
        """The method's prompting, or plain text for a batch without visual input (``visual`` and
        ``pixels`` both None): then the language model runs alone, as in a text-only reference."""
        if batch.visual is None and batch.pixels is None:
            return TEXT_ONLY
        return self.prompting

    def visual_context(self, batch: VLBatch) -> AbstractContextManager:
        """Active around every language-model call on ``batch`` (MemVP binds its visual memory here)."""
        return self.prompting_for(batch).context(batch)

    def with_visual(self, batch: VLBatch) -> VLBatch:
        """Runs the on-the-fly vision tower, when there is one, to fill ``batch.visual``."""
        if self.vision_tower is None or batch.pixels is None:
            return batch
        return replace(batch, visual=self.vision_tower(batch.pixels))

    def forward(self, batch: VLBatch) -> torch.Tensor:
        """Per-sample mean token cross-entropy of the targets, shape (B,)."""
        batch = self.with_visual(batch)
        with self.visual_context(batch):
            inputs, prefix = self.prompting_for(batch).lm_inputs(
                self.lm, batch.input_ids, batch.attention_mask, batch, generation=False
            )
            if self.is_encoder_decoder:
                # decoder_input_ids rather than labels: the model would also compute a loss we discard
                decoder_input_ids = self.lm.prepare_decoder_input_ids_from_labels(labels=batch.labels)
                out = self.lm(**inputs, decoder_input_ids=decoder_input_ids)
                logits, targets = out.logits, batch.labels
                mask = targets != -100
                token_loss = F.cross_entropy(logits[mask], targets[mask], reduction="none")
                rows = mask.nonzero()[:, 0]
            else:
                hidden = self._decoder_hidden(inputs, prefix)
                labels = F.pad(batch.labels, (prefix, 0), value=-100) if prefix else batch.labels
                targets = labels[:, 1:]
                mask = targets != -100
                # The LM head runs only where a target token is predicted (a 49k-wide projection
                # per prompt token would cost more than the rest of a small model).
                logits = self.lm.get_output_embeddings()(hidden[:, :-1][mask])
                token_loss = F.cross_entropy(logits.float(), targets[mask], reduction="none")
                rows = mask.nonzero()[:, 0]
        sums = torch.zeros(len(batch), device=token_loss.device, dtype=token_loss.dtype).index_add_(0, rows, token_loss)
        counts = torch.bincount(rows, minlength=len(batch)).clamp(min=1)
        return sums / counts

    @contextmanager
    def prefix_cache_off(self) -> Iterator[None]:
        """Every layer runs inside the block, as for a text the cache has not seen."""
        cache, self.prefix_cache = self.prefix_cache, None
        try:
            yield
        finally:
            self.prefix_cache = cache

    def _decoder_hidden(self, inputs: dict, prefix: int) -> torch.Tensor:
        """The decoder-only model's last hidden states, from the frozen-prefix cache when it applies
        (text-only input, right-padded)."""
        cache = self.prefix_cache
        if (
            cache is not None
            and prefix == 0
            and set(inputs) == {"input_ids", "attention_mask"}
            and is_right_padded(inputs["attention_mask"])
        ):
            return cache(inputs["input_ids"], inputs["attention_mask"])
        return self.lm.base_model(**inputs, use_cache=False).last_hidden_state

    @torch.no_grad()
    def generate(self, batch: VLBatch, max_new_tokens: int, num_beams: int = 1, **generate_kwargs) -> list[str]:
        """Greedy (or beam) decoding of an answer per sample, special tokens removed.

        ``generate_kwargs`` go to Hugging Face ``generate`` (e.g. ``min_new_tokens``).
        """
        kwargs = dict(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **generate_kwargs,
        )
        batch = self.with_visual(batch)
        with self.visual_context(batch):
            inputs, _ = self.prompting_for(batch).lm_inputs(
                self.lm, batch.prompt_ids, batch.prompt_mask, batch, generation=True
            )
            out = self.lm.generate(**inputs, **kwargs)
        if not self.is_encoder_decoder and "input_ids" in inputs:
            out = out[:, inputs["input_ids"].shape[1] :]  # from inputs_embeds, only new tokens come back
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
