"""The efficiency benchmarks: exact input lengths, FLOPs counter vs Eq. 13-15, the Table 1
lengths derived from the paper, interleaved timing, and every study end to end on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import open_dict

from helpers import make_config
from memvp_lab.bench import run_study
from memvp_lab.benchmark.flops_table import FLOPS_METRIC, Shape, derive_lengths
from memvp_lab.benchmark.measure import (
    analytic_flops,
    build_for_study,
    interleaved,
    measured_flops,
    memory_spec,
    saved_activation_bytes,
    visual_flops,
)
from memvp_lab.benchmark.sweep_summary import summarize
from memvp_lab.benchmark.synthetic_batches import Lengths, input_visual_tokens, synthetic_batch, task_lengths, text_only
from memvp_lab.config.compose import compose_config
from memvp_lab.methods.registry import methods, runs_on
from memvp_lab.results.paper_numbers import paper_column, paper_spec
from memvp_lab.training.factory import build_model

TINY = ["vision=tiny_random"]


def _built(backbone: str, method: str = "memvp"):
    overrides = [f"backbone={backbone}", f"method={method}", *TINY]
    if method == "memvp":
        overrides += ["method.n=64"] + (["method.layers=encoder"] if backbone != "tiny_llama" else [])
    return build_model(make_config(overrides))


def _study(name: str, *overrides: str):
    return compose_config([f"study={name}", *overrides], config_name="bench").study


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
    # on the text alone the memory term is gone, in both counts
    text = text_only(batch)
    assert (
        measured_flops(memvp.model, text)
        == analytic_flops(memvp.model, lengths, text)
        < measured_flops(memvp.model, batch)
    )
    llava = _built("tiny_llama", "llava_lora")
    batch = synthetic_batch(llava.model, lengths, 2, llava.visual.feature_dim)
    assert input_visual_tokens(llava.model, batch) == 49 and input_visual_tokens(llava.model, text_only(batch)) == 0
    measured, analytic = measured_flops(llava.model, batch), analytic_flops(llava.model, lengths, batch)
    # The formula leaves LoRA's low-rank products out; they are a few percent of the LM's work.
    assert analytic < measured < 1.1 * analytic


def test_training_activations_grow_with_input_space_tokens():
    lengths = Lengths(prompt=9, answer=3, visual=49)
    sizes = {}
    for method in ("memvp", "llava_lora"):
        built = _built("tiny_llama", method)
        sizes[method] = saved_activation_bytes(
            built.model, synthetic_batch(built.model, lengths, 2, built.visual.feature_dim)
        )
    assert 0 < sizes["memvp"] < sizes["llava_lora"]


def test_interleaved_takes_turns_and_drops_warmup_rounds():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2, warmup=1)
    assert calls == ["a", "b"] * 3 and {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}


def test_task_configs_store_lengths_and_a_missing_one_is_named():
    cfg = make_config(["task=vqav2"])
    assert task_lengths(cfg.task, 49) == Lengths(10, 1, 49)
    with open_dict(cfg):
        del cfg.task["lengths"]
    with pytest.raises(ValueError, match="conf/task/vqav2.yaml"):
        task_lengths(cfg.task, 49)


def test_table1_lengths_follow_from_the_full_fine_tuning_row_and_predict_memvp():
    """The stored VQAv2 / GQA / COCO lengths are what the paper's full fine-tuning FLOPs imply on
    BART-base and T5-base; from them the analytic count gives MemVP's FLOPs within 10%."""
    paper = paper_column(paper_spec("table1"), FLOPS_METRIC)
    shapes = {}
    for backbone in ("bart_base", "t5_base"):
        for method in ("full_ft", "memvp"):
            built, _ = build_for_study(
                [
                    f"method={method}",
                    f"backbone={backbone}",
                    "backbone.weights=random",
                    "vision=clip_rn101",
                    "task=vqav2",
                ],
                empty=True,
            )
            one = synthetic_batch(built.model, Lengths(4, 1, 49), 1, built.visual.feature_dim)
            shapes[backbone, method] = Shape(
                built.model.lm.config, input_visual_tokens(built.model, one), memory_spec(built.model)
            )
    tasks = {t: compose_config([f"task={t}"]).task for t in ("vqav2", "gqa", "coco_caption")}
    assert shapes["bart_base", "full_ft"].visual_tokens == 36 and shapes["t5_base", "memvp"].memory.slots == 240
    for task, task_cfg in tasks.items():
        values = [paper[f"{b}/full_ft"][task] for b in ("bart_base", "t5_base")]
        prompt, answer, error = derive_lengths([shapes[b, "full_ft"] for b in ("bart_base", "t5_base")], values)
        assert (prompt, answer) == (task_cfg.lengths.prompt, task_cfg.lengths.answer) and error < 0.02
        for backbone in ("bart_base", "t5_base"):
            predicted = shapes[backbone, "memvp"].gflops(prompt, answer)
            assert predicted == pytest.approx(paper[f"{backbone}/memvp"][task], rel=0.10)


def test_compare_study_writes_table_json_and_plot_and_the_sweep_summary_joins_them(tmp_path):
    """``python -m memvp_lab.bench study=<name>`` as a user types it (tiny models), from a fresh folder."""
    out = tmp_path / "sweep" / "table3_smollm2"
    overrides = [
        "study=table3_smollm2",
        "study.model_overrides=['backbone=tiny_llama','vision=tiny_random','task=shapes_vqa']",
        "study.method_overrides.memvp=['method.n=64']",
        "study.rounds=1",
        "study.warmup=0",
        "study.train_batch_size=2",
        "study.eval_batch_size=2",
        "study.memory_batch_size=2",
        f"hydra.run.dir={out}",
    ]
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "memvp_lab.bench", *overrides], cwd=tmp_path / "cwd", capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    tmp_path = out
    assert set(result["methods"]) == {"memvp", "llava_lora"} and result["lengths"] == {
        "prompt": 11,
        "answer": 2,
        "visual": 49,
    }
    assert result["ratios_to_reference"]["llava_lora"]["train_s_per_step"] == 1.0
    memvp, llava = result["methods"]["memvp"], result["methods"]["llava_lora"]
    assert memvp["input_visual_tokens"] == 0 and llava["input_visual_tokens"] == 49
    assert memvp["train_s_per_step"] > 0 and memvp["inference_s_per_batch"] > 0
    assert memvp["lm_gflops_measured"] == memvp["lm_gflops_analytic"] < llava["lm_gflops_measured"]
    assert 0 < memvp["activation_mb"] < memvp["train_memory_mb"]
    table = (tmp_path / "bench.md").read_text()
    assert "paper 0.57x" in table and "(ratio: method / llava_lora)" in table
    assert json.loads((tmp_path / "bench.json").read_text())["machine"]["torch_threads"] >= 1
    assert (tmp_path / "bench.png").stat().st_size > 1000
    summary = summarize(tmp_path.parent).read_text()
    assert "![table3_smollm2](table3_smollm2/bench.png)" in summary and "paper 0.57x" in summary
    assert (tmp_path.parent.parent / "latest").resolve() == tmp_path.parent.resolve()


def test_text_length_study_times_each_length_with_and_without_visual_tokens(tmp_path):
    study = _study(
        "fig2_text_length",
        "study.model_overrides=['backbone=tiny_llama','vision=tiny_random']",
        "study.text_lengths=[8,16]",
        "study.rounds=1",
        "study.warmup=0",
        "study.train_batch_size=1",
        "study.eval_batch_size=2",
    )
    result = run_study(study, tmp_path)
    assert result["visual_tokens"] == 49 and [p["text_tokens"] for p in result["points"]] == [8, 16]
    assert all(p["train_s_with"] > 0 and p["inference_s_without"] > 0 for p in result["points"])
    assert (tmp_path / "bench.png").exists() and "16 |" in (tmp_path / "bench.md").read_text()


def test_overhead_study_counts_the_memory_term_as_eq_15_says(tmp_path):
    llama = [
        "backbone=tiny_llama",
        "vision=tiny_random",
        "task=shapes_vqa",
        "method.n=64",
        "method.unfreeze=[layer_norms]",
    ]
    t5 = [
        "backbone=tiny_t5",
        "vision=tiny_random",
        "task=vqav2",
        "method.n=64",
        "method.layers=encoder",
        "method.unfreeze=[layer_norms]",
    ]
    study = _study(
        "memvp_overhead", "study.rounds=1", "study.warmup=0", "study.train_batch_size=2", "study.eval_batch_size=2"
    )
    with open_dict(study):
        study.cases = {"tiny_llama": llama, "tiny_t5": t5}
    result = run_study(study, tmp_path)
    for case in result["cases"].values():
        assert case["lm_flops_ratio_counted"] == pytest.approx(case["lm_flops_ratio_analytic"], rel=1e-9)
        assert case["model_flops_ratio_counted"] > case["lm_flops_ratio_counted"] > 1 and case["train_ratio"] > 0
    llama = result["cases"]["tiny_llama"]
    assert llama["layer_flops_ratio_eq"] == pytest.approx(1 + 64 / (6 * llama["d_model"] + 13))


def test_flops_table_study_counts_every_cell(tmp_path):
    study = _study(
        "table1_flops",
        "study.backbones=[tiny_bart,tiny_t5]",
        "study.methods=[full_ft,memvp]",
        "study.tasks=[vqav2]",
        "study.vision=tiny_random",
        "study.backbone_overrides=[]",
    )
    result = run_study(study, tmp_path)
    assert set(result["cells"]) == {"tiny_bart/full_ft", "tiny_bart/memvp", "tiny_t5/full_ft", "tiny_t5/memvp"}
    cell = result["cells"]["tiny_t5/memvp"]["vqav2"]
    assert cell["measured"] == pytest.approx(cell["analytic"]) and cell["paper"] is None
    assert result["derived_lengths"] == {}  # no paper row for tiny backbones


def test_prefix_cache_study_times_both_paths_of_one_model_and_they_agree(tmp_path):
    study = _study("prefix_cache", "study.rounds=1", "study.warmup=1", "study.train_batch_size=2")
    with open_dict(study):
        study.cases = {
            "tiny_llama": [
                "backbone=tiny_llama",
                "vision=tiny_random",
                "task=shapes_vqa",
                "method.n=64",
                "method.first_layer=1",
            ]
        }
    result = run_study(study, tmp_path)
    case = result["cases"]["tiny_llama"]
    assert (case["layers"], case["skipped_layers"]) == (2, 1)
    assert case["train_s_full"] > 0 and case["train_s_cached"] > 0 and case["loss_abs_diff"] < 1e-6
    assert case["hit_rate"] > 0.5  # after the first call every text comes from the cache
    assert "1-1 of 2" in (tmp_path / "bench.md").read_text() and (tmp_path / "bench.png").exists()


def test_a_study_of_all_methods_takes_every_registered_method_that_fits_the_backbone():
    from memvp_lab.benchmark.measure import study_methods
    from memvp_lab.methods.registry import methods

    assert study_methods(["memvp", "lora"]) == ["memvp", "lora"]
    decoder_only = study_methods("all", ["backbone=tiny_llama"])
    encoder_decoder = study_methods("all", ["backbone=tiny_t5"])
    assert set(decoder_only) == set(methods()) - {"vl_pet"}
    assert set(encoder_decoder) == set(methods()) - {"llava_lora"}


FAMILY_CASES = [(m, b) for b in ("tiny_llama", "tiny_t5") for m in methods() if runs_on(m, b != "tiny_llama")]


@pytest.mark.parametrize("method,backbone", FAMILY_CASES, ids=lambda x: str(x))
def test_every_method_counts_what_its_formulas_say(method, backbone):
    """FlopCounterMode's count equals the formula for the per-image work outside the LM of every
    method (projectors, ADEM-VL's two, VLoRA's generator), and for the LM's work of the methods
    whose additions the formula models (memory terms, input tokens, VLoRA's deltas; the adapter
    and LoRA matmuls inside the LM are not in it)."""
    built = _built(backbone, method)
    lengths = Lengths(prompt=9, answer=3, visual=built.visual.num_tokens)
    batch = synthetic_batch(built.model, lengths, 2, built.visual.feature_dim)
    if method in ("memvp", "adem_vl", "vlora", "full_ft"):
        assert measured_flops(built.model, batch) == analytic_flops(built.model, lengths, batch)
    counted, formula = visual_flops(built.model, batch)
    assert counted == formula
    if method in ("memvp", "adem_vl", "vlora", "llava_lora"):
        assert formula > 0


def test_cost_scaling_study_puts_each_space_where_its_formula_says(tmp_path):
    """Input-space cost grows with the visual tokens fastest, memory-space slower, parameter-space
    not in the LM at all; the formula equals FlopCounterMode for the memory / parameter spaces."""
    study = _study(
        "cost_scaling",
        "study.visual_tokens=[16,64]",
        "study.text_lengths=[8,32]",
        "study.shapes=[{name: tiny, model_overrides: ['backbone=tiny_llama','vision=tiny_random']}]",
        "study.check_shapes=[tiny]",
        "study.check_tokens=[16]",
        "study.check_lengths=[8]",
    )
    result = run_study(study, tmp_path)
    cell = {(r["method"], r["visual_tokens"], r["text_length"]): r for r in result["rows"]}
    growth = {m: cell[(m, 64, 8)]["lm_gflops"] - cell[(m, 16, 8)]["lm_gflops"] for m in study.methods}
    assert growth["llava_lora"] > growth["adem_vl"] > 0 and growth["memvp"] > 0 and growth["vlora"] == 0
    for check in result["checks"]:
        if check["method"] != "llava_lora":  # its LoRA matmuls are not in the formula
            assert check["lm_gflops_formula"] == pytest.approx(check["lm_gflops_counted"], rel=1e-12)
        assert check["visual_gflops_formula"] == pytest.approx(check["visual_gflops_counted"], rel=1e-12)
    assert "| vlora | parameter space |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 1000
