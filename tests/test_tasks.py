"""Each real task trains and evaluates through the entry point on files in its real format, and
bad data stops the run with a message that names what to fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import make_config, rescored_vqa
from memvp_lab.errors import DataError, FeatureError
from memvp_lab.metrics.choices import choice_index
from memvp_lab.train import train
from real_formats import write_coco_captions, write_feature_dir, write_gqa, write_vqav2

pytestmark = pytest.mark.slow  # integration tier: every task trained end to end

NEEDS_JAVA = pytest.mark.skipif(
    shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs Java (make java)"
)


def run(task: str, root: Path, out: Path, *extra: str) -> dict:
    memvp = [] if any(e.startswith("method=") for e in extra) else ["method=memvp", "method.n=64"]
    if memvp and not any(e.startswith("method.layers") for e in extra):
        memvp.append("method.layers=encoder")
    overrides = [
        f"task={task}",
        f"task.root={root}",
        "backbone=tiny_t5",
        "vision=tiny_random",
        *memvp,
        "trainer=debug",
        "logger=csv",
        "task.data.num_workers=0",
        "task.data.batch_size=4",
        "task.data.eval_batch_size=4",
        "flops_samples=2",
        *extra,
    ]
    train(make_config(overrides, out))
    return json.loads((out / "results.json").read_text())


def test_vqav2_trains_and_scores_with_official_answers(tmp_path):
    results = run("vqav2", write_vqav2(tmp_path / "data"), tmp_path / "run")
    annotations = [
        Path(results["config"]["task"]["data"]["root"]) / f
        for f in results["config"]["task"]["data"]["annotation_file"]
    ]
    assert results["test/vqa_score"] == pytest.approx(rescored_vqa(tmp_path / "run", annotations), abs=1e-6)
    assert {"test/vqa_score/answer_type/yes_no", "test/vqa_score/answer_type/number"} <= set(results)
    predictions = json.loads((tmp_path / "run" / "predictions_test.json").read_text())
    assert sorted(p["question_id"] for p in predictions) == list(range(3000, 3008))
    assert set(predictions[0]) == {"question_id", "answer"}  # the VQA challenge format
    assert (tmp_path / "run" / "predictions_val.json").exists()


def test_community_vqav2_tree_trains_with_its_own_vision_settings(tmp_path):
    """`task=vqav2 task.root=<tree>`: the task brings the vision settings of the features it is
    distributed with (CLIP RN101, 49 x 2048), so nothing else needs overriding."""
    root = write_vqav2(tmp_path / "data", shape=(49, 2048))
    cfg = make_config(
        [f"task.root={root}", "task=vqav2", "backbone=tiny_llama", "trainer=debug", "logger=csv"], tmp_path
    )
    assert (cfg.vision.name, cfg.vision.num_tokens, cfg.vision.feature_dim) == ("clip_rn101", 49, 2048)
    train(cfg)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"


def test_features_of_another_vision_stop_the_run_before_weights_load(tmp_path):
    """The community tree run with the embedded default's vision settings: one line naming the
    file, both shapes and the setting that fits, exit code 2, before any model loads."""
    root = write_vqav2(tmp_path / "data", shape=(49, 2048))
    env = {**os.environ, "MEMVP_LAB_CACHE": str(tmp_path / "empty_cache")}  # no model may be needed
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memvp_lab.train",
            "task=vqav2",
            f"task.root={root}",
            "vision=efficientnet_lite0",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "data_clip_RN101_att" in error[0] and "(49, 2048)" in error[0] and "(49, 1280)" in error[0]
    assert "set vision=clip_rn101" in error[0]
    assert not (tmp_path / "empty_cache").exists()  # SmolLM2 was never converted: nothing loaded


def test_gqa_reads_two_feature_roots_and_scores_exact_match(tmp_path):
    data = write_gqa(tmp_path / "data")
    results = run("gqa", data, tmp_path / "run")
    assert results["config"]["optimized_metric"] == "test/accuracy"
    predictions = json.loads((tmp_path / "run" / "predictions_test.json").read_text())
    assert len(predictions) == 6 and set(predictions[0]) == {"questionId", "prediction"}
    # The logged accuracy is exact match of the written predictions against the accepted answers.
    labels = {q["question_id"]: q["label"] for q in json.loads((data / "GQA" / "testdev.json").read_text())}
    rescored = sum(p["prediction"].strip() in labels[p["questionId"]] for p in predictions) / len(predictions)
    assert results["test/accuracy"] == pytest.approx(rescored, abs=1e-6)


@NEEDS_JAVA
def test_coco_captions_train_per_caption_and_score_cider(tmp_path):
    results = run(
        "coco_caption",
        write_coco_captions(tmp_path / "data"),
        tmp_path / "run",
        "task.evaluator.meteor=false",
        "task.generation.max_new_tokens=6",
        "task.generation.num_beams=2",
    )
    predictions = json.loads((tmp_path / "run" / "predictions_test.json").read_text())
    assert sorted(p["image_id"] for p in predictions) == [11, 12, 13]  # one caption per test image
    # The logged CIDEr is pycocoevalcap's on the written captions against the test references.
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    images = json.loads((tmp_path / "data" / "COCO" / "dataset_coco.json").read_text())["images"]
    refs = {im["cocoid"]: [{"caption": s["raw"]} for s in im["sentences"]] for im in images if im["split"] == "test"}
    tokenizer = PTBTokenizer()
    cider, _ = Cider().compute_score(
        tokenizer.tokenize(refs), tokenizer.tokenize({p["image_id"]: [{"caption": p["caption"]}] for p in predictions})
    )
    assert results["test/cider"] == pytest.approx(cider, abs=1e-6)
    assert {"test/bleu4", "test/rouge_l"} <= set(results)


def test_caption_dataset_counts_samples_like_the_reference(tmp_path):
    from memvp_lab.data.captions import CaptionDataset, load_karpathy

    root = write_coco_captions(tmp_path)
    images = load_karpathy(root / "COCO" / "dataset_coco.json")
    train = CaptionDataset(images, ["train", "restval"], None, True, "x")
    test = CaptionDataset(images, ["test"], None, False, "x")
    assert len(train) == 8 * 3 and len(test) == 3  # every training caption; each test image once
    assert len(test.entries[0]["references"]) == 3


def _vqav2_without(tmp_path: Path, img_id: str) -> Path:
    root = write_vqav2(tmp_path / "data")
    (root / "COCO" / "clip_features" / "data_clip_RN101_att" / f"{img_id}.h5").unlink()
    return root


def test_missing_feature_names_the_image_and_file_before_training(tmp_path):
    root = _vqav2_without(tmp_path, "COCO_val2014_000000000001")
    with pytest.raises(FeatureError, match=r"COCO_val2014_000000000001.*data_clip_RN101_att.*skip_missing_images"):
        run("vqav2", root, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "results.json").read_text())  # the failure, no score
    assert record["status"] == "failed" and record["error"].startswith("FeatureError: ")
    assert "COCO_val2014_000000000001" in record["error"] and not any(k.startswith("test/") for k in record)


def test_skip_missing_images_drops_and_counts(tmp_path, caplog):
    root = _vqav2_without(tmp_path, "COCO_train2014_000000000003")
    results = run("vqav2", root, tmp_path / "run", "task.data.skip_missing_images=true")
    assert "test/vqa_score" in results
    assert any("skipped" in r.message and "COCO_train2014_000000000003" in r.message for r in caplog.records)


def test_feature_of_wrong_shape_is_named(tmp_path):
    root = write_vqav2(tmp_path / "data")
    folder = root / "COCO" / "clip_features" / "data_clip_RN101_att"
    write_feature_dir(folder, ["COCO_train2014_000000000000"], shape=(36, 256))
    with pytest.raises(FeatureError, match=r"COCO_train2014_000000000000.*shape \(36, 256\).*expected \(49, 256\)"):
        run("vqav2", root, tmp_path / "run")


def test_malformed_entry_and_empty_split_are_named(tmp_path):
    root = write_vqav2(tmp_path / "data")
    path = root / "vqa" / "karpathy_train.json"
    entries = json.loads(path.read_text())
    del entries[3]["sent"]
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"karpathy_train.json entry 3 .*'sent'"):
        run("vqav2", root, tmp_path / "run")
    path.write_text("[]")
    with pytest.raises(DataError, match="karpathy_train.json holds no questions"):
        run("vqav2", root, tmp_path / "run2")


def test_consolidated_features_read_like_per_image_files(tmp_path):
    from memvp_lab.data.extraction import consolidate
    from memvp_lab.data.feature_files import FeatureStore

    root = write_vqav2(tmp_path / "data")
    folder = root / "COCO" / "clip_features" / "data_clip_RN101_att"
    single = consolidate(folder, tmp_path / "all.h5")
    a, b = FeatureStore(folder, 49, 256), FeatureStore(single, 49, 256)
    img_id = "COCO_val2014_000000000002"
    assert np.array_equal(a.get(img_id), b.get(img_id))
    with h5py.File(single) as f:
        assert f[f"{img_id}/features"].dtype == np.float16


def test_scienceqa_with_features_scores_the_official_categories(tmp_path):
    from real_formats import write_scienceqa

    root = tmp_path / "sqa"
    (root / "features").mkdir(parents=True)
    write_scienceqa(root, features=root / "features" / "tiny_random.h5")
    results = run(
        "scienceqa",
        root,
        tmp_path / "run",
        "backbone=tiny_llama",
        "method.layers=all",
        "task.data.max_prompt_tokens=64",
    )
    assert {"test/accuracy/NAT", "test/accuracy/IMG", "test/accuracy/NO", "test/accuracy/G1-6"} <= set(results)
    predictions = json.loads((tmp_path / "run" / "predictions_test.json").read_text())
    assert sorted(predictions) == [str(q) for q in range(116, 124)]  # {qid: choice index}
    assert all(v in (-1, 0, 1, 2) for v in predictions.values())
    # The logged accuracies are those of the written choices against problems.json, overall and per
    # category (IMG: the question has an image; NO: no context at all).
    problems = json.loads((root / "problems.json").read_text())

    def accuracy(qids):
        return sum(predictions[q] == problems[q]["answer"] for q in qids) / len(qids)

    assert results["test/accuracy"] == pytest.approx(accuracy(list(predictions)), abs=1e-6)
    with_image = [q for q in predictions if problems[q]["image"]]
    assert results["test/accuracy/IMG"] == pytest.approx(accuracy(with_image), abs=1e-6)


def test_scienceqa_runs_a_vit_with_adapters_on_the_images(tmp_path):
    """vision.adapters set: images are loaded and the ViT's adapters train with the method."""
    from real_formats import write_scienceqa

    root = write_scienceqa(tmp_path / "sqa")
    vit = [
        "vision=clip_vit_l14",
        "vision.encoder.timm_name=vit_tiny_patch16_224",
        "vision.encoder.weights=random",
        "vision.feature_dim=192",
        "vision.num_tokens=4",
        "vision.image_size=32",
    ]
    results = run(
        "scienceqa",
        root,
        tmp_path / "run",
        "backbone=tiny_llama",
        "method=llava_lora",
        "task.data.max_prompt_tokens=64",
        *vit,
    )
    assert "test/accuracy" in results
    meta = json.loads((tmp_path / "run" / "trainable" / "trainable.json").read_text())
    assert any(name.startswith("vision_tower.") and ".adapter." in name for name in meta["tensors"])


@pytest.mark.parametrize("task,answers,method", [("tvqa", 5, "memvp"), ("how2qa", 4, "vl_adapter")])
def test_video_qa_over_frame_features(task, answers, method, tmp_path):
    from real_formats import write_video_qa

    root = write_video_qa(tmp_path / "video", task, answers, frames=64, dim=32)
    extra = ["method.layers=encoder", "method.n=64"] if method == "memvp" else ["method.prompt.pool_size=null"]
    results = run(
        task, root, tmp_path / "run", "vision=clip_vit_b32_frames", "vision.feature_dim=32", f"method={method}", *extra
    )
    predictions = json.loads((tmp_path / "run" / "predictions_test.json").read_text())
    assert len(predictions) == 6
    # The logged accuracy is that of the option letters written against the files' answer_idx.
    lines = (root / task / "val.jsonl").read_text().splitlines()
    truth = {q["qid"]: q["answer_idx"] for q in map(json.loads, lines)}
    rescored = sum(choice_index(p["answer"], answers) == truth[p["question_id"]] for p in predictions) / 6
    assert results["test/accuracy"] == pytest.approx(rescored, abs=1e-6)


def test_video_frames_are_not_pooled_as_a_grid(tmp_path):
    from memvp_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"method.prompt.pool_size=null"):
        run("tvqa", tmp_path, tmp_path / "run", "vision=clip_vit_b32_frames", "method=vl_pet")


def test_features_command_extracts_resumably_in_both_layouts(tmp_path):
    from PIL import Image

    from memvp_lab.data.feature_files import FeatureStore
    from memvp_lab.features import main

    images = tmp_path / "images"
    for split, qid in (("train", "7"), ("test", "9")):
        (images / split / qid).mkdir(parents=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(images / split / qid / "image.png")
    out = tmp_path / "features.h5"
    args = [
        "extract",
        "--vision",
        "tiny_random",
        "--images",
        str(images),
        "--pattern",
        "*/*/image.png",
        "--id-from",
        "parent",
        "--out",
        str(out),
        "--batch-size",
        "1",
    ]
    assert main(args) == 0
    store = FeatureStore(out, 49, 256)
    assert "7" in store and "9" in store and store.get("7").dtype == np.float16
    first = {k: store.get(k) for k in ("7", "9")}
    store.close()
    mtime = out.stat().st_mtime_ns
    assert main(args) == 0 and out.stat().st_mtime_ns == mtime  # nothing left to do: file untouched
    per_image = tmp_path / "per_image"
    assert main([*args[:-4], "--out", str(per_image), "--batch-size", "1"]) == 0
    assert sorted(p.name for p in per_image.glob("*.h5")) == ["7.h5", "9.h5"]
    assert np.array_equal(FeatureStore(per_image, 49, 256).get("9"), first["9"])
    assert main(["consolidate", "--src", str(per_image), "--out", str(tmp_path / "all.h5")]) == 0
    assert np.array_equal(FeatureStore(tmp_path / "all.h5", 49, 256).get("7"), first["7"])


def test_features_command_extracts_evenly_spaced_frames_of_each_video(tmp_path):
    """``--videos``: one frame folder per video; ``vision.num_tokens`` frames spread over each
    (first and last included), each encoded to CLIP's projected [CLS] (the ViT's full output)."""
    import torch
    from hydra.utils import instantiate
    from PIL import Image

    from memvp_lab.data.extraction import sampled_frames
    from memvp_lab.data.images import load_image
    from memvp_lab.features import main, vision_config

    frames = [Path(f"{i}.jpg") for i in range(10)]
    assert sampled_frames(frames, 4) == [Path("0.jpg"), Path("3.jpg"), Path("6.jpg"), Path("9.jpg")]
    assert sampled_frames(frames[:2], 4) == [Path("0.jpg"), Path("0.jpg"), Path("1.jpg"), Path("1.jpg")]

    videos = tmp_path / "frames"
    for v, count in (("clip_a", 5), ("clip_b", 2)):
        (videos / "show" / v).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (40, 30), (40 * i, 10, 200)).save(videos / "show" / v / f"{i:05d}.jpg")
    out = tmp_path / "frames.h5"
    overrides = ["vision.num_tokens=3"]
    args = ["extract", "--vision", "clip_vit_b32_frames", "--weights", "random", "--videos", str(videos)]
    assert main([*args, "--pattern", "*/*", "--out", str(out), *overrides]) == 0
    encoder = instantiate(vision_config("clip_vit_b32_frames", "random", overrides).encoder).eval()
    with h5py.File(out) as f:
        assert sorted(f) == ["clip_a", "clip_b"]
        stored = f["clip_a/features"][()]
    assert stored.shape == (3, 512) and stored.dtype == np.float16
    picked = torch.stack([load_image(videos / "show" / "clip_a" / f"{i:05d}.jpg", 224) for i in (0, 2, 4)])
    with torch.inference_mode():
        expected = encoder.model(((picked - encoder.mean) / encoder.std))  # the ViT's head: CLIP's projection
    np.testing.assert_allclose(stored.astype(np.float32), expected.numpy(), atol=2e-2, rtol=1e-2)


def test_a_second_process_waits_for_the_one_writing_the_feature_file(tmp_path):
    """Two runs preparing the same data at once: the second waits for the first's extraction, then
    finds every image in the file (it used to fail opening a file the first held for writing)."""
    import textwrap

    from memvp_lab.data.extraction import extract_features

    out = tmp_path / "features.h5"
    images = {f"img{i}": tmp_path / f"img{i}.jpg" for i in range(3)}
    writer = textwrap.dedent(
        f"""
        import time, h5py, numpy as np
        from filelock import FileLock
        with FileLock({str(out) + ".lock"!r}), h5py.File({str(out)!r}, "a") as f:
            print("writing", flush=True)
            time.sleep(3)
            for i in range(3):
                f.create_dataset(f"img{{i}}/features", data=np.zeros((49, 8), np.float16))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"  # the other process holds the file now

    def no_encoder():
        raise AssertionError("every image is extracted by the other process")

    assert extract_features(no_encoder, images, out) == out
    assert proc.wait(timeout=30) == 0
