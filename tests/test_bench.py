"""The efficiency benchmark on tiny models: exact input lengths, FLOPs counter vs Eq. 13-15,
interleaved timing, and the result table."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from conftest import make_config
from memvp_lab.bench import (Lengths, analytic_flops, format_table, input_visual_tokens, interleaved, measured_flops,
                             run, saved_activation_bytes, synthetic_batch)
from memvp_lab.factory import build_model
from memvp_lab.paths import config_dir

def _built(backbone: str, method: str = "memvp"):
    overrides = [f"backbone={backbone}", f"method={method}", "vision=tiny_random"]
    if method == "memvp":
        overrides += ["method.n=64"] + (["method.layers=encoder"] if backbone != "tiny_llama" else [])
    return build_model(make_config(overrides))


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_t5"])
def test_synthetic_batches_have_exactly_the_configured_lengths(backbone):
    built = _built(backbone)
    lengths = Lengths(prompt=9, answer=3, visual=built.visual.num_tokens)
    batch = synthetic_batch(built.model, lengths, batch_size=4, feature_dim=built.visual.feature_dim)
    assert batch.prompt_ids.shape == (4, 9) and batch.visual.shape == (4, 49, built.visual.feature_dim)
    assert ((batch.labels != -100).sum(dim=1) == 3).all()
    assert batch.input_ids.shape == ((4, 9) if built.model.is_encoder_decoder else (4, 12))
    assert batch.attention_mask.all()


def test_memvp_flops_counter_equals_eq_13_15_and_input_space_adds_visual_tokens():
    memvp = _built("tiny_llama")
    lengths = Lengths(prompt=9, answer=3, visual=49)
    batch = synthetic_batch(memvp.model, lengths, 2, memvp.visual.feature_dim)
    assert input_visual_tokens(memvp.model, batch) == 0
    assert measured_flops(memvp.model, batch) == analytic_flops(memvp.model, lengths, batch)
    llava = _built("tiny_llama", "llava_lora")
    batch = synthetic_batch(llava.model, lengths, 2, llava.visual.feature_dim)
    assert input_visual_tokens(llava.model, batch) == 49
    measured, analytic = measured_flops(llava.model, batch), analytic_flops(llava.model, lengths, batch)
    # The formula leaves LoRA's low-rank products out; they are a few percent of the LM's work.
    assert analytic < measured < 1.1 * analytic


def test_training_activations_grow_with_input_space_tokens():
    lengths = Lengths(prompt=9, answer=3, visual=49)
    sizes = {}
    for method in ("memvp", "llava_lora"):
        built = _built("tiny_llama", method)
        sizes[method] = saved_activation_bytes(built.model, synthetic_batch(built.model, lengths, 2, built.visual.feature_dim))
    assert 0 < sizes["memvp"] < sizes["llava_lora"]


def test_interleaved_takes_turns_and_drops_warmup_rounds():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2, warmup=1)
    assert calls == ["a", "b"] * 3 and {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}


def test_run_reports_every_method_with_ratios_to_the_reference(tmp_path):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=[
            "methods=[memvp,llava_lora]", "reference=llava_lora", "rounds=1", "warmup=0",
            "train_batch_size=2", "eval_batch_size=2", "lengths.prompt=7", "lengths.answer=2",
            "model_overrides=['backbone=tiny_llama','vision=tiny_random']", "+method_overrides.memvp=['method.n=64']",
            f"output_dir={tmp_path}"])
        result = run(cfg)
    assert set(result["methods"]) == {"memvp", "llava_lora"}
    assert result["ratios_to_reference"]["llava_lora"]["train_s_per_step"] == 1.0
    memvp = result["methods"]["memvp"]
    assert memvp["input_visual_tokens"] == 0 and memvp["train_s_per_step"] > 0 and memvp["inference_s_per_batch"] > 0
    assert result["methods"]["llava_lora"]["input_visual_tokens"] == 49
    table = format_table(result)
    assert "ratios in brackets: method / llava_lora" in table and "(1.00x)" in table
