"""Visual-knowledge locating and distortion (paper Fig. 5 / 6) on a tiny MemVP run.

One tiny LLaMA MemVP run (3 optimizer steps) is trained per module; the encoder-decoder backbones
are checked on freshly built models (the retrieval path does not depend on training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import make_config, tiny_overrides
from memvp_lab.config.compose import compose_config
from memvp_lab.errors import ConfigError
from memvp_lab.results.records import write_results
from memvp_lab.train import train
from memvp_lab.training.checkpoint import save_trainable
from memvp_lab.training.factory import build_model
from memvp_lab.visualization.heatmaps import DPI, figure_inches
from memvp_lab.visualization.queries import image_features, task_queries
from memvp_lab.visualization.retrieval import (
    blocked_mask,
    bound_with,
    capture_scores,
    generate,
    grid_shape,
    locate,
    prompt_states,
    slot_weights,
    top_slots,
    visual_memory,
)
from memvp_lab.visualization.run import MemoryRun, data_module, load_memory_run
from memvp_lab.visualization.tokens import choose, question_tokens
from memvp_lab.visualize import visualize

pytestmark = pytest.mark.slow  # integration tier: a trained run per module

# A few steps with a large constant learning rate: the memory's tensors (P_v included) move away
# from their initialisation, so the position-only slots contribute something.
TRAIN = (
    "threads=1",
    "trainer.max_steps=3",
    "flops_samples=0",
    "callbacks.epoch_checkpoint=null",
    "method.lr=1e-2",
    "method.warmup_steps=0",
)
GENERATION = {"max_new_tokens": 4, "num_beams": 1}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread here (the runs are tiny); the suite's setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("memvp_run")
    train(make_config(tiny_overrides("tiny_llama", data_dir, *TRAIN), out))
    return out


@pytest.fixture(scope="module")
def loaded(run_dir):
    run = load_memory_run(run_dir)
    return run, data_module(run)


@pytest.fixture(scope="module")
def queries(loaded):
    _, datamodule = loaded
    return task_queries(datamodule, split="test", question_types=["color", "count"], per_type=1, image_size=224)


def _visualize_cfg(*overrides: str):
    return compose_config(["threads=1", *overrides], config_name="visualize")


def test_question_tokens_are_the_question(loaded, queries):
    run, datamodule = loaded
    for query in queries:
        tokens = question_tokens(datamodule.collate, query.sample, query.prompt_row())
        # byte-level tokens: their texts, spaces removed, spell the question; BOS and " Answer:" are not in it
        assert "".join(tokens.labels) == query.question.replace(" ", "")
        assert tokens.positions == list(range(1, 1 + len(tokens)))
    tokens = question_tokens(datamodule.collate, queries[0].sample, queries[0].prompt_row())
    assert choose(tokens, ["color"]).labels == ["color"]
    assert choose(tokens, [0, -1]).positions == [tokens.positions[0], tokens.positions[-1]]
    with pytest.raises(ConfigError, match="not a question token"):
        choose(tokens, ["zebra"])


def test_capturing_scores_changes_no_output(loaded, queries):
    """(a) The observer only reads: hidden states, training loss and generated answers are identical."""
    run, _ = loaded
    model, batch = run.model, queries[0].batch
    calls = []

    def observer(index, scores):
        calls.append(index)

    assert torch.equal(prompt_states(model, batch), prompt_states(model, batch, observer=observer))
    with torch.no_grad():
        loss = model(batch)
        with bound_with(run.memory, observer=observer):
            assert torch.equal(model(batch), loss)
    assert generate(model, batch, GENERATION, observer=observer) == model.generate(batch, **GENERATION)
    assert calls and set(calls) == {0, 1}  # both FFNs of the 2-layer model reported


def test_blocking_no_slot_changes_nothing(loaded, queries):
    """(b) An all-False mask: hidden states, loss and answers identical to the unblocked model."""
    run, _ = loaded
    model, batch = run.model, queries[0].batch
    none = blocked_mask(run.memory, [])
    assert not none.any() and none.shape == (1, run.memory.num_slots)
    assert torch.equal(prompt_states(model, batch, blocked=none), prompt_states(model, batch))
    with torch.no_grad():
        loss = model(batch)
        with bound_with(run.memory, blocked=none):
            assert torch.equal(model(batch), loss)
    assert generate(model, batch, GENERATION, blocked=none) == model.generate(batch, **GENERATION)


def test_blocking_all_slots_is_the_plain_lm_and_visual_slots_remove_the_image(loaded, queries):
    """(c) Blocking every slot (visual and position-only) zeroes the whole memory term: the output is
    exactly the language model without memory. Blocking exactly the visual slots leaves the
    position-only entries: the output no longer depends on the image (equal for two images and for
    a sample without an image, whose visual slots are blocked too), but it is not the plain LM,
    because the trained position-only entries still add their term."""
    run, _ = loaded
    model, memory = run.model, run.memory
    a, b = queries[0].batch, queries[1].batch
    plain = prompt_states(model, a, memory=False)
    everything = blocked_mask(memory, range(memory.num_slots))
    assert torch.equal(prompt_states(model, a, blocked=everything), plain)

    visual = blocked_mask(memory, range(memory.num_prompt_tokens))
    assert memory.num_prompt_tokens < memory.num_slots  # 49 visual slots + 15 position-only
    with_image = prompt_states(model, a, blocked=visual)
    other_image = prompt_states(model, replace(a, visual=b.visual), blocked=visual)
    no_image = prompt_states(model, replace(a, has_image=torch.zeros(1)), blocked=visual)
    assert torch.allclose(with_image, other_image, rtol=0, atol=1e-6)
    assert torch.allclose(with_image, no_image, rtol=0, atol=1e-6)
    assert not torch.allclose(with_image, plain, rtol=0, atol=1e-6)
    assert not torch.allclose(prompt_states(model, a), prompt_states(model, replace(a, visual=b.visual)))


def test_heat_maps_are_the_mean_observer_scores_on_the_grid(loaded, queries):
    """(e) Each token's map is the observers' activated scores of the 49 visual slots, averaged over
    the FFNs, laid out row-major on the 7x7 grid; the blocked slots are the top mean weights."""
    run, datamodule = loaded
    query = queries[1]
    seen = {}
    prompt_states(run.model, query.batch, observer=lambda i, s: seen.__setitem__(i, s.clone()))
    tokens = question_tokens(datamodule.collate, query.sample, query.prompt_row())
    located = locate(run.model, query.batch, tokens.positions, (7, 7), GENERATION, block_top_k=3)
    mean = (seen[0] + seen[1])[0] / 2  # (L, slots)
    assert located.maps.shape == (len(tokens), 7, 7)
    for t, pos in enumerate(tokens.positions):
        assert torch.allclose(located.maps[t], mean[pos, :49].reshape(7, 7), rtol=0, atol=1e-6)
        for r, c in ((0, 0), (2, 5), (6, 6)):
            assert located.maps[t, r, c].item() == pytest.approx(mean[pos, r * 7 + c].item(), abs=1e-6)
    assert torch.allclose(located.layer_maps[1, 0], seen[1][0, tokens.positions[0], :49].reshape(7, 7))
    weights = mean[tokens.positions, :49].mean(dim=0)
    assert located.blocked == weights.topk(3).indices.tolist()
    assert located.blocked == top_slots(located.scores, tokens.positions, 49, 3).tolist()
    assert torch.allclose(slot_weights(located.scores, tokens.positions, 49), weights, atol=1e-6)
    expected = generate(run.model, query.batch, GENERATION, blocked=blocked_mask(run.memory, located.blocked))
    assert located.answer_blocked == expected[0]
    assert located.answer == run.model.generate(query.batch, **GENERATION)[0]


def test_image_file_features_match_the_task_features(loaded, queries):
    """An image file goes through the encoder and the task's standardisation: it gets the features
    training used (up to the float16 storage and traced-vs-eager encoder differences)."""
    run, datamodule = loaded
    from memvp_lab.data.images import load_image

    img_id = queries[0].sample["img_id"]
    features = image_features(run.cfg.vision, datamodule, load_image(datamodule.root / "images" / f"{img_id}.jpg", 224))
    stored = datamodule.feature_sources.get(img_id)
    assert features.shape == stored.shape == (49, 256)
    assert abs(features - stored).max() < 1e-2 and abs(stored).max() > 1


def test_cli_writes_one_png_per_question(run_dir, tmp_path):
    """(d) ``python -m memvp_lab.visualize``: one non-empty PNG per question, of the documented size."""
    out = tmp_path / "vis"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memvp_lab.visualize",
            f"run_dir={run_dir}",
            f"out_dir={out}",
            "question_types=[color,position,count]",
            "block_top_k=2",
            "threads=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "retrieval.json").read_text())
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(summary["questions"]) == 3
    for record in summary["questions"]:
        png = out / record["png"]
        assert png.stat().st_size > 1000
        width, height = figure_inches(1 + len(record["tokens"]) + 1, 1)
        assert Image.open(png).size == (round(width * DPI), round(height * DPI))
        assert len(record["blocked"]) == 2 and record["answer_blocked"] is not None


def test_image_path_and_per_layer_rows(run_dir, loaded, queries, tmp_path):
    run, datamodule = loaded
    image = datamodule.root / "images" / f"{queries[0].sample['img_id']}.jpg"
    cfg = _visualize_cfg(
        f"run_dir={run_dir}",
        f"out_dir={tmp_path}",
        f"image={image}",
        "question=What color is the circle?",
        "tokens=[color,circle]",
        "per_layer=true",
    )
    (png,) = visualize(cfg)
    width, height = figure_inches(1 + 2, 1 + 2)  # 2 tokens; the mean row + one row per FFN
    assert Image.open(png).size == (round(width * DPI), round(height * DPI))
    record = json.loads((tmp_path / "retrieval.json").read_text())["questions"][0]
    assert record["tokens"] == ["color", "circle"] and record["blocked"] == []


def test_refuses_a_method_without_visual_memory(data_dir, tmp_path):
    """(d) A LoRA run folder (results.json + trainable/, written without training) is refused, naming it."""
    cfg = make_config(["method=lora", "backbone=tiny_t5", f"paths.data_dir={data_dir}", "vision=tiny_random"], tmp_path)
    built = build_model(cfg)
    save_trainable(built.model, tmp_path / "trainable", built.method)
    write_results(tmp_path / "results.json", {}, cfg)
    with pytest.raises(ConfigError, match=r"method=lora has no visual memory.*method=memvp"):
        visualize(_visualize_cfg(f"run_dir={tmp_path}", "question_types=[color]"))


def test_asks_for_something_to_draw(run_dir):
    with pytest.raises(ConfigError, match="nothing to draw"):
        visualize(_visualize_cfg(f"run_dir={run_dir}"))


@pytest.mark.parametrize("backbone", ["tiny_bart", "tiny_t5"])
def test_encoder_decoder_backbones(backbone, data_dir, tmp_path):
    """Memory in the encoder FFNs: the question's retrieval comes from the encoder sites, blocking
    every slot gives the plain encoder, and the question tokens skip the special tokens."""
    cfg = make_config(tiny_overrides(backbone, data_dir, "threads=1"), tmp_path)
    built = build_model(cfg)
    built.model.eval()
    memory = visual_memory(built.model, "memvp")
    run = MemoryRun(tmp_path, cfg, built, memory)
    datamodule = data_module(run)
    (query,) = task_queries(datamodule, split="test", question_types=["shape"], image_size=224)
    tokens = question_tokens(datamodule.collate, query.sample, query.prompt_row())
    assert "".join(tokens.labels) == query.question.replace(" ", "")
    scores = capture_scores(built.model, query.batch)
    assert all(".encoder." in f".{s}" for s in scores.sites) and len(scores.sites) == 2
    assert scores.values.shape == (2, 1, len(query.prompt_row()), memory.num_slots)
    located = locate(built.model, query.batch, tokens.positions, grid_shape(memory), GENERATION, block_top_k=1)
    assert located.maps.shape == (len(tokens), 7, 7) and len(located.blocked) == 1
    everything = blocked_mask(memory, range(memory.num_slots))
    assert torch.equal(
        prompt_states(built.model, query.batch, blocked=everything),
        prompt_states(built.model, query.batch, memory=False),
    )


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_t5"])
def test_adem_vl_maps_its_first_view_at_the_question_positions(backbone, data_dir, tmp_path):
    """ADEM-VL's memory reads 49 grid entries then a pooled 3x3 view; the maps are drawn on the
    first view, at the text positions (its one input token excluded: in front of a decoder-only
    model's text, after an encoder's), and blocking every entry leaves the model without memory."""
    from helpers import TINY_DATA

    encoder = ["method.layers=encoder", "method.shared_positions=false"] if backbone == "tiny_t5" else []
    overrides = [f"backbone={backbone}", "method=adem_vl", *encoder, f"paths.data_dir={data_dir}", *TINY_DATA]
    cfg = make_config([*overrides, "threads=1", "logger=csv"], tmp_path)
    built = build_model(cfg)
    built.model.eval()
    memory = visual_memory(built.model, "adem_vl")
    assert memory.num_slots == 49 + 9 and grid_shape(memory) == (7, 7)
    datamodule = data_module(MemoryRun(tmp_path, cfg, built, memory))
    (query,) = task_queries(datamodule, split="test", question_types=["shape"], image_size=224)
    text = len(query.prompt_row())
    seen = {}
    prompt_states(built.model, query.batch, observer=lambda i, s: seen.__setitem__(i, s.clone()))
    assert seen[0].shape == (1, text + 1, 58)  # the text and the one visual token
    scores = capture_scores(built.model, query.batch)
    assert scores.values.shape == (len(scores.sites), 1, text, 58)
    own = seen[0][0, :text] if backbone == "tiny_t5" else seen[0][0, 1:]
    assert torch.equal(scores.values[0, 0], own)
    tokens = question_tokens(datamodule.collate, query.sample, query.prompt_row())
    located = locate(built.model, query.batch, tokens.positions, (7, 7), GENERATION, block_top_k=2)
    expected = scores.values[:, 0][:, tokens.positions[0], :49].mean(dim=0).reshape(7, 7)
    assert torch.allclose(located.maps[0], expected, atol=1e-6) and len(located.blocked) == 2
    everything = blocked_mask(memory, range(memory.num_slots))
    assert torch.equal(
        prompt_states(built.model, query.batch, blocked=everything),
        prompt_states(built.model, query.batch, memory=False),
    )
