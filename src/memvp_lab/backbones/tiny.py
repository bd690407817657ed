"""Tiny random LLaMA / BART / T5 backbones built from configs, for tests and quick runs.

They need no files: the tokenizer is a byte-level BPE trained in well under a second on a fixed
corpus, so any text can be encoded and decoded.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from memvp_lab.backbones.backbone import Backbone, TextFormat, check_family

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
_CORPUS = (
    "what color is the circle square triangle object shape how many shapes are there is on the "
    "left or right red green blue yellow purple orange yes no one two three 1 2 3 4 5 6 7 8 9 0 "
    "question answer context options the answer is a b c d e provide a one-sentence caption for "
    "the provided image . , ? ! : ; ( ) a man a woman a dog a cat sitting standing on in of with"
)


@lru_cache(maxsize=4)
def _bpe(vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok


def tiny_tokenizer(style: str, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; ``style`` sets the special tokens added around a text.

    ``bart``: ``<s> ... </s>``; ``t5``: ``... </s>``; ``llama``: nothing (BOS added by TextFormat).
    """
    tok = Tokenizer.from_str(_bpe(vocab_size).to_str())
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    if style == "bart":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    elif style == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny(
    name: str,
    family: str,
    arch: str,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
    seed: int = 0,
    feed_forward_proj: str = "relu",
    attn_implementation: str = "sdpa",
) -> Backbone:
    """Builds a random tiny ``llama``, ``bart`` or ``t5`` model with a matching tokenizer.

    Args:
        name: the backbone's config name.
        family: ``decoder_only`` or ``encoder_decoder`` (checked against ``arch``).
        arch: ``llama``, ``bart`` or ``t5``.
        hidden_size, num_layers, num_heads, intermediate_size: model shape (``num_layers`` per stack
            for the encoder-decoders).
        seed: weight initialisation seed (independent of the run seed).
        feed_forward_proj: T5 FFN kind, ``relu`` or ``gated-gelu``.
    """
    tokenizer = tiny_tokenizer({"llama": "llama", "bart": "bart", "t5": "t5"}[arch])
    vocab = len(tokenizer)
    pad, bos, eos = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if arch == "llama":
            config = LlamaConfig(
                vocab_size=vocab,
                hidden_size=hidden_size,
                intermediate_size=intermediate_size,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                num_key_value_heads=max(1, num_heads // 2),
                max_position_embeddings=256,
                pad_token_id=pad,
                bos_token_id=bos,
                eos_token_id=eos,
                tie_word_embeddings=True,
            )
            model = LlamaForCausalLM(config)
            text = TextFormat(prompt="{prompt} Answer:", target=" {target}{eos}", add_bos=True)
        elif arch == "bart":
            config = BartConfig(
                vocab_size=vocab,
                d_model=hidden_size,
                encoder_layers=num_layers,
                decoder_layers=num_layers,
                encoder_attention_heads=num_heads,
                decoder_attention_heads=num_heads,
                encoder_ffn_dim=intermediate_size,
                decoder_ffn_dim=intermediate_size,
                max_position_embeddings=256,
                pad_token_id=pad,
                bos_token_id=bos,
                eos_token_id=eos,
                decoder_start_token_id=eos,
                forced_bos_token_id=None,
            )
            model = BartForConditionalGeneration(config)
            text = TextFormat(target="{target}")
        elif arch == "t5":
            config = T5Config(
                vocab_size=vocab,
                d_model=hidden_size,
                d_kv=hidden_size // num_heads,
                d_ff=intermediate_size,
                num_layers=num_layers,
                num_heads=num_heads,
                feed_forward_proj=feed_forward_proj,
                pad_token_id=pad,
                eos_token_id=eos,
                decoder_start_token_id=pad,
            )
            model = T5ForConditionalGeneration(config)
            text = TextFormat(target="{target}")
        else:
            raise ValueError(f"backbone.arch={arch!r}: expected llama, bart or t5")
    model.set_attn_implementation(attn_implementation)
    return check_family(
        Backbone(name=name, model=model.eval(), tokenizer=tokenizer, text=text, source="random"), family
    )
