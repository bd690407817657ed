"""A trained adapter answering questions about images, from code or from ``python -m memvp_lab.predict``.

    import memvp_lab
    model = memvp_lab.load("outputs/demo/<time>")          # a run folder, or an exported one
    model.answer("photo.jpg", "What color is the circle?")
    model.answer_batch(["a.jpg", "b.jpg"], ["How many shapes are there?"] * 2)

``load`` accepts a finished run folder (``results.json`` + ``trainable/``) or a folder written by
``python -m memvp_lab.export`` (``config.yaml`` + the trainable tensors). It rebuilds the model
the run trained (the backbone it names, the method, the vision settings), loads the trained
tensors, and refuses a checkpoint whose method, backbone or vision encoder differs from the one
being built, naming each difference. An image goes through the run's vision encoder, is stored
as float16 as extraction stores features, and gets the run's feature standardisation; the
question is laid out with the task's prompt and the backbone's text format, exactly as in training.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from memvp_lab.config.compose import compose_config
from memvp_lab.data.collate import VLCollator, unlabelled_sample
from memvp_lab.data.extraction import as_stored
from memvp_lab.data.feature_files import standardized
from memvp_lab.data.images import load_image
from memvp_lab.errors import CheckpointMismatch, ConfigError
from memvp_lab.training.checkpoint import (
    META,
    check_fingerprint,
    load_feature_stats,
    load_trainable,
    model_fingerprint,
    read_meta,
)
from memvp_lab.training.factory import Built, build_model, instantiate_node

CONFIG = "config.yaml"  # the run config an exported folder carries
# What a caller may change when loading: where the weights are read from and how answers are
# generated; anything else would make another model than the one trained.
OVERRIDABLE = ("backbone.", "vision.encoder.", "task.generation.")

ImageInput = str | Path | Image.Image


def adapter_files(path: str | Path) -> tuple[DictConfig, Path]:
    """(the run's config, the folder of its trained tensors) of a run folder or an exported one."""
    from memvp_lab.training.finished_run import TRAINABLE, run_config

    folder = Path(path)
    if (folder / "results.json").is_file() and (folder / TRAINABLE / META).is_file():
        return run_config(folder), folder / TRAINABLE
    if (folder / CONFIG).is_file() and (folder / META).is_file():
        return OmegaConf.load(folder / CONFIG), folder
    raise ConfigError(
        f"{path}: not a trained adapter; expected a run folder (results.json and {TRAINABLE}/{META}) "
        f"or an exported folder ({CONFIG} and {META})"
    )


def _apply(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    from memvp_lab.training.finished_run import merge_overrides

    return merge_overrides(
        cfg,
        overrides,
        allowed=OVERRIDABLE,
        why="only where the weights come from and how answers are generated can change "
        f"({', '.join(k + '<key>=<value>' for k in OVERRIDABLE)})",
    )


def _this_machine(cfg: DictConfig) -> DictConfig:
    """The recorded config with the paths of the machine it was trained on replaced by this
    machine's (the converted-weights cache; ``paths.*``)."""
    here = compose_config([]).paths
    with open_dict(cfg):
        old_cache = str(cfg.paths.cache_dir)
        cfg.paths.cache_dir = str(here.cache_dir)
        if str(cfg.backbone.get("cache_dir", "")) == old_cache:
            cfg.backbone.cache_dir = str(here.cache_dir)
    return cfg


class Predictor:
    """A loaded adapter. ``answer`` / ``answer_batch`` take image files or PIL images.

    Attributes:
        cfg: the run's config (with any overrides); ``built``: its model (eval mode) and parts.
    """

    def __init__(self, cfg: DictConfig, built: Built, feature_stats, device: str = "cpu") -> None:
        self.cfg = cfg
        self.built = built
        self.device = torch.device(device)
        self.model = built.model.to(self.device).eval()
        data = cfg.task.data
        self.prompt = str(data.prompt)
        self.collate = VLCollator(built.backbone, self.prompt, int(data.max_prompt_tokens), int(data.max_target_tokens))
        self.fields = [f for _, f, _, _ in string.Formatter().parse(self.prompt) if f]
        self.image_size = int(cfg.vision.image_size)
        # The model runs its own vision tower on pixels, or gets features from a frozen encoder.
        self.encoder = None if built.model.vision_tower is not None else instantiate_node(cfg.vision.encoder).eval()
        self.stats = None if feature_stats is None else tuple(t.numpy() for t in feature_stats)
        self.generation = OmegaConf.to_container(cfg.task.generation)

    def features(self, pixels: torch.Tensor) -> np.ndarray:
        """(tokens, dim) features of (3, H, W) pixels, as training read them from its files."""
        with torch.inference_mode():
            feats = as_stored(self.encoder(pixels[None]))[0]
        return feats.astype(np.float32) if self.stats is None else standardized(feats, self.stats)

    def sample(self, image: ImageInput, question: str, index: int = 0, **fields) -> dict:
        """The sample dict the task's collator takes, for one question about one image."""
        values = {"question": question, **fields}
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise ConfigError(
                f"the task's prompt {self.prompt!r} also needs {', '.join(missing)}; pass "
                + ", ".join(f"{m}=..." for m in missing)
            )
        if isinstance(image, (str, Path)) and not Path(image).is_file():
            raise ConfigError(f"image={image}: no such file")
        pixels = load_image(image, self.image_size)
        sample = unlabelled_sample(index, index, **values)
        if self.encoder is None:
            sample.update(pixels=pixels, visual=np.zeros((0, 0), dtype=np.float32))
        else:
            sample["visual"] = self.features(pixels)
        return sample

    def answer(self, image: ImageInput, question: str, **fields) -> str:
        """The model's answer to ``question`` about ``image`` (other prompt fields as keywords)."""
        return self.answer_batch([image], [question], [fields] if fields else None)[0]

    def answer_batch(
        self,
        images: Sequence[ImageInput],
        questions: Sequence[str],
        fields: Sequence[dict] | None = None,
        batch_size: int = 8,
    ) -> list[str]:
        """Answers for ``questions[i]`` about ``images[i]``, ``batch_size`` at a time."""
        if len(images) != len(questions) or (fields is not None and len(fields) != len(images)):
            raise ConfigError(f"{len(images)} images but {len(questions)} questions: give one question per image")
        answers: list[str] = []
        for start in range(0, len(images), batch_size):
            samples = [
                self.sample(images[i], questions[i], i, **(fields[i] if fields else {}))
                for i in range(start, min(start + batch_size, len(images)))
            ]
            batch = move_data_to_device(self.collate(samples), self.device)
            with torch.inference_mode():
                answers += self.model.generate(batch, **self.generation)
        return answers


def load(path: str | Path, device: str = "cpu", overrides: Sequence[str] = ()) -> Predictor:
    """Loads a trained adapter (a run folder or an exported folder) onto the backbone it names.

    ``overrides`` change where weights come from or how answers are generated, e.g.
    ``["backbone.model_id=/models/llama-7b", "task.generation.num_beams=5"]``. Raises
    ``CheckpointMismatch`` when the method, backbone or vision encoder built differs from the one
    the tensors were trained with.
    """
    cfg, trainable = adapter_files(path)
    cfg = _apply(_this_machine(cfg), overrides)
    meta = read_meta(trainable)
    if meta.get("method") not in (None, cfg.method.name):
        raise CheckpointMismatch(
            f"{trainable} holds method={meta['method']}, the config names method={cfg.method.name}"
        )
    built = build_model(cfg)
    check_fingerprint(meta, model_fingerprint(built.backbone, cfg.vision), trainable)
    load_trainable(built.model, trainable, str(cfg.method.name))
    stats = load_feature_stats(trainable)
    if stats is None and needs_feature_stats(cfg):
        stats = feature_stats_from_data(cfg, built, trainable)
    return Predictor(cfg, built, stats, device)


def needs_feature_stats(cfg: DictConfig) -> bool:
    data = cfg.task.data
    return bool(data.get("standardize_features") and data.get("features") and not cfg.task.get("images_on_the_fly"))


def feature_stats_from_data(cfg: DictConfig, built: Built, trainable: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The standardisation statistics of a run whose checkpoint predates saving them, computed
    again from its training features (the same images, the same rule), which must be present."""
    from memvp_lab.errors import DataError, FeatureError
    from memvp_lab.training.finished_run import data_module_of

    datamodule = data_module_of(cfg, built, preload=False)
    root = datamodule.root
    try:
        if not root.exists():
            raise FileNotFoundError(datamodule.root)
        datamodule.setup("test")
        scale = datamodule.feature_sources.scale
        datamodule.teardown("test")
    except (OSError, DataError, FeatureError) as err:
        raise ConfigError(
            f"{trainable} has no feature statistics (the run predates them) and the run's training features "
            f"to compute them from are not readable under {root} ({err}); put the run's data there"
        ) from None
    return torch.from_numpy(scale[0]), torch.from_numpy(scale[1])
