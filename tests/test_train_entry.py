"""The training entry point on tiny models: results, logs, trainability, start-up errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from helpers import TINY_DATA, make_config, rescored_vqa, shapes_annotations, tiny_overrides
from memvp_lab.errors import ConfigError
from memvp_lab.train import train
from memvp_lab.training.factory import build_backbone
from wandb_records import config_keys, history_keys, run_info

pytestmark = pytest.mark.slow  # integration tier: the train entry point end to end

REQUIRED = (
    "test/vqa_score",
    "params/trainable",
    "params/total",
    "flops/lm_gflops_per_sample",
    "memory/peak_rss_gb",
    "time/train_s_per_step",
    "time/eval_s_per_batch",
    "time/fit_wall_s",
    "time/test_wall_s",
)


def _expected_trainable(d: int, n: int = 64, feature_dim: int = 256, hidden: int = 128) -> int:
    # shared P_k, P_v (n x d) + projector C -> hidden -> d with biases
    return 2 * n * d + (feature_dim * hidden + hidden) + (hidden * d + d)


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_bart", "tiny_t5"])
def test_train_writes_results(backbone, data_dir, tmp_path):
    cfg = make_config(tiny_overrides(backbone, data_dir), tmp_path)
    metrics = train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    for key in REQUIRED:
        assert key in results and key in metrics
    # The logged score is the official rule applied to the written predictions, sample by sample.
    assert results["test/vqa_score"] == pytest.approx(rescored_vqa(tmp_path, [shapes_annotations(results)]), abs=1e-6)
    assert results["params/trainable"] == _expected_trainable(64)
    assert results["flops/lm_gflops_per_sample"] > 0
    assert results["config"]["method"]["n"] == 64
    assert set(results["versions"]) >= {"torch", "transformers", "lightning", "memvp_lab"}
    assert "sha" in results["git"]
    predictions = json.loads((tmp_path / "predictions_test.json").read_text())
    assert {"question_id", "answer"} == set(predictions[0])
    csv = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/vqa_score" in csv and "train/loss" in csv


def test_only_memory_tensors_train(data_dir, tmp_path):
    """After real optimizer steps, every LM tensor is bit-identical; all memory tensors moved."""
    import lightning as L
    from hydra.utils import instantiate

    from memvp_lab.training.lit_module import VisionLanguageTask
    from memvp_lab.vision.spec import VisualSpec

    cfg = make_config(tiny_overrides("tiny_llama", data_dir), tmp_path)
    method = instantiate(cfg.method, _convert_="all")
    visual = VisualSpec(cfg.vision.feature_dim, cfg.vision.num_tokens)
    backbone = build_backbone(cfg.backbone)
    model = method.build(backbone, visual)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert trainable == {
        "prompting.pos_k",
        "prompting.pos_v",
        "prompting.projector.0.weight",
        "prompting.projector.0.bias",
        "prompting.projector.2.weight",
        "prompting.projector.2.bias",
    }
    datamodule = instantiate(cfg.task.data, _partial_=True)(backbone=backbone, visual=visual)
    task = VisionLanguageTask(model, method, None, dict(cfg.task.generation), flops_samples=0, predictions_dir=None)
    L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        enable_model_summary=False,
    ).fit(task, datamodule=datamodule)
    after = model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]) != (name in trainable), name


def test_wandb_offline_run_records_metrics(data_dir, tmp_path):
    cfg = make_config(tiny_overrides("tiny_llama", data_dir, "logger=default"), tmp_path)
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    keys = history_keys(runs[0])
    for key in ("val/vqa_score", "test/vqa_score", "flops/lm_gflops_per_sample", "params/trainable", "train/loss"):
        assert key in keys
    assert {"method", "backbone", "task"} <= config_keys(runs[0])
    # Outside a Hydra run: the fallback name and group; the job type is the method.
    assert run_info(runs[0]) == {
        "name": "shapes_vqa-memvp-tiny_llama-seed0",
        "group": "shapes_vqa-tiny_llama",
        "job_type": "memvp",
    }
    import wandb

    assert wandb.run is None  # finished: the next job of a multirun gets its own run


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("method.n=abc", r"method\.n"),
        ("method.ablation=sideways", r"method\.ablation"),
        ("method.layrs=all", r"layrs"),
    ],
)
def test_bad_values_fail_at_composition_naming_the_key(override, pattern, data_dir):
    with pytest.raises((ValidationError, ConfigCompositionException)) as err:
        make_config(tiny_overrides("tiny_llama", data_dir, override))
    assert __import__("re").search(pattern, str(err.value) + str(err.value.__cause__))


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["method.n=10"], r"method\.n=10 is smaller than the 49 visual tokens.*method\.n>=49"),
        (["method.layers=encoder"], r"method\.layers=encoder.*decoder-only"),
        (["backbone.family=encoder_decoder"], r"backbone\.family"),
        (["method.dropout=1.5"], r"method\.dropout"),
    ],
)
def test_bad_combinations_fail_before_building(overrides, pattern, data_dir, tmp_path):
    cfg = make_config(tiny_overrides("tiny_llama", data_dir, *overrides), tmp_path)
    with pytest.raises(ConfigError, match=pattern):
        train(cfg)
    record = json.loads((tmp_path / "results.json").read_text())  # a sweep's report shows the cell as failed
    assert record["status"] == "failed" and record["error"].startswith("ConfigError: ")
    assert record["failed_at_step"] is None and not any(k.startswith("test/") for k in record)


def test_unknown_backbone_lists_the_options(data_dir):
    with pytest.raises(MissingConfigException, match=r"(?s)backbone.*smollm2_135m"):
        make_config(tiny_overrides("no_such_model", data_dir))


def _cli(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "memvp_lab.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_cli_runs_started_together_never_share_a_folder(data_dir, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "memvp_lab.train", *tiny_overrides("tiny_llama", data_dir)]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-3000:]
    results = list((tmp_path / "outputs").rglob("results.json"))
    assert len(results) == 2 and results[0].parent != results[1].parent


def test_cli_reports_bad_value_at_startup(data_dir, tmp_path):
    proc = _cli([*tiny_overrides("tiny_llama", data_dir), "method.n=10"], tmp_path)
    assert proc.returncode == 2
    assert "error: method.n=10 is smaller than the 49 visual tokens" in proc.stderr
    assert "Traceback" not in proc.stderr  # one line naming the key, no stack


@pytest.mark.parametrize(
    "method,backbone",
    [
        ("lora", "tiny_t5"),
        ("vl_adapter", "tiny_bart"),
        ("compacter", "tiny_t5"),
        ("vl_pet", "tiny_bart"),
        ("full_ft", "tiny_llama"),
        ("llava_lora", "tiny_llama"),
    ],
    ids=lambda x: str(x),
)
def test_every_method_trains_through_the_entry_point(method, backbone, data_dir, tmp_path):
    overrides = [
        f"method={method}",
        f"backbone={backbone}",
        "trainer=debug",
        "logger=csv",
        f"paths.data_dir={data_dir}",
        *TINY_DATA,
    ]
    metrics = train(make_config(overrides, tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["method"]["name"] == method
    assert 0 < results["params/trainable"] <= results["params/total"]
    assert results["flops/lm_gflops_per_sample"] > 0
    rescored = rescored_vqa(tmp_path, [shapes_annotations(results)])
    assert metrics["test/vqa_score"] == pytest.approx(rescored, abs=1e-6) == results["test/vqa_score"]
    meta = json.loads((tmp_path / "trainable" / "trainable.json").read_text())
    assert meta["method"] == method and meta["parameters"] == results["params/trainable"]


def test_skip_existing_leaves_a_finished_run_alone(data_dir, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"test/vqa_score": 0.5, "config": {}}))
    metrics = train(make_config(tiny_overrides("tiny_llama", data_dir, "skip_existing=true"), tmp_path))
    assert metrics == {"test/vqa_score": 0.5}
    assert not (tmp_path / "csv").exists()  # nothing ran


def test_skip_existing_runs_again_a_folder_holding_other_settings(data_dir, tmp_path):
    """A sweep whose experiment file changed (here the learning rate) must not keep a cell trained
    with the old value: the cell runs again and the old record is kept beside it."""
    from memvp_lab.training.runs import changed_settings, run_threads

    cfg = make_config(tiny_overrides("tiny_llama", data_dir, "skip_existing=true"), tmp_path)
    recorded = OmegaConf.to_container(cfg, resolve=True)
    recorded["method"]["lr"] = 0.5
    recorded["paths"]["data_dir"] = "/elsewhere"  # the data moved: not a difference
    recorded["task"]["data"]["data_dir"] = "/elsewhere"
    recorded["method"]["retired_setting"] = 1  # a key only one side has is not a difference
    threads = run_threads(cfg)  # the count this run will use: `threads`, else torch's default
    machine = {"torch_threads": threads}
    earlier = json.dumps({"status": "completed", "test/vqa_score": 0.5, "config": recorded, "machine": machine})
    (tmp_path / "results.json").write_text(earlier)
    assert changed_settings(json.loads(earlier), cfg) == [f"method.lr: 0.5 → {cfg.method.lr!r}"]
    # Another thread count sums floats in another order: a difference, named by the counts used.
    other = {"status": "completed", "config": recorded, "machine": {"torch_threads": threads + 6}}
    assert changed_settings(other, cfg) == [
        f"method.lr: 0.5 → {cfg.method.lr!r}",
        f"threads: {threads + 6} → {threads}",
    ]
    metrics = train(cfg)
    assert metrics["test/vqa_score"] != 0.5 and (tmp_path / "csv").exists()
    assert (tmp_path / "results.previous.json").read_text() == earlier
    # Now the folder holds this run: the same command skips it.
    assert changed_settings(json.loads((tmp_path / "results.json").read_text()), cfg) == []


def test_a_run_without_threads_uses_torchs_default_after_a_job_that_set_a_count(data_dir, tmp_path):
    """The jobs of a multirun share a process: a cell with `threads: null` after one that set a
    count must not inherit it (the count changes the run's numbers)."""
    from memvp_lab.training.runs import DEFAULT_THREADS

    torch.set_num_threads(DEFAULT_THREADS + 1)  # what an earlier job with threads=<n> leaves behind
    try:
        train(make_config(tiny_overrides("tiny_llama", data_dir), tmp_path / "default"))
        assert torch.get_num_threads() == DEFAULT_THREADS
        train(make_config(tiny_overrides("tiny_llama", data_dir, "threads=1"), tmp_path / "one"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(DEFAULT_THREADS)
    recorded = [json.loads((tmp_path / d / "results.json").read_text())["machine"] for d in ("default", "one")]
    assert [m["torch_threads"] for m in recorded] == [DEFAULT_THREADS, 1]


def test_cli_multirun_gives_one_folder_and_one_wandb_run_per_job_grouped_by_sweep(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides("tiny_llama", data_dir) if not o.startswith("logger=")]
    proc = _cli(["-m", *overrides, "logger=wandb", "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = [json.loads((sweep / str(i) / "results.json").read_text())["config"]["seed"] for i in (0, 1)]
    assert seeds == [0, 1]  # job i of the sweep in folder i
    infos = [run_info(next((sweep / str(i) / "wandb").glob("offline-run-*/run-*.wandb"))) for i in (0, 1)]
    assert {i["group"] for i in infos} == {"shapes_vqa-tiny_llama/sweep"}  # one group for the sweep
    assert all(i["job_type"] == "memvp" for i in infos)
    assert [("seed=0" in i["name"], "seed=1" in i["name"]) for i in infos] == [(True, False), (False, True)]
    assert all("backbone=tiny_llama" in i["name"] and "paths." not in i["name"] for i in infos)


def test_features_commands_run_as_documented(tmp_path):
    """`python -m memvp_lab.features extract` and `consolidate`, typed as the README shows them, in a
    fresh working directory (the extract command once failed composing its config)."""
    import h5py
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, color in enumerate(("red", "green", "blue")):
        Image.new("RGB", (64, 48), color).save(images / f"img{i}.jpg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    commands = [
        f"extract --vision efficientnet_lite0 --images {images} --out f.h5",
        f"extract --vision efficientnet_lite0 --images {images} --out per_image",
        "consolidate --src per_image --out all.h5",
    ]
    for command in commands:
        args = [sys.executable, "-m", "memvp_lab.features", *command.split()]
        subprocess.run(args, cwd=tmp_path, env=env, check=True, capture_output=True)
    with h5py.File(tmp_path / "f.h5") as one, h5py.File(tmp_path / "all.h5") as merged:
        assert sorted(one) == sorted(merged) == ["img0", "img1", "img2"]
        for key in one:
            assert one[key]["features"].shape == (49, 1280)
            assert (one[key]["features"][()] == merged[key]["features"][()]).all()
