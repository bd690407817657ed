"""Where a trained MemVP run's question tokens look in the image, and what blocking it changes:
``python -m memvp_lab.visualize run_dir=<run dir> [options]`` (see ``conf/visualize.yaml``).

Visual-knowledge locating (paper Fig. 5): for each chosen question token, the retrieval weights
``act(u K^T)`` of the visual memory slots, averaged over the FFNs with memory (or per FFN), are
laid out on the vision encoder's feature grid and overlaid on the image. Distortion (paper Fig. 6):
``block_top_k=k`` sets the activations of the k most-retrieved visual slots to zero and generates
the answer again. One PNG per question, plus ``retrieval.json`` with the numbers behind them.

``visualize(cfg)`` is a plain function (tests call it); ``main`` is the Hydra entry point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from memvp_lab.errors import ConfigError
from memvp_lab.paths import config_dir, write_text_atomic
from memvp_lab.visualization.heatmaps import draw_question
from memvp_lab.visualization.queries import Query, image_queries, task_queries
from memvp_lab.visualization.retrieval import grid_shape, locate
from memvp_lab.visualization.run import data_module, load_memory_run
from memvp_lab.visualization.tokens import choose, question_tokens

log = logging.getLogger(__name__)
SUMMARY = "retrieval.json"


def _listed(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return list(OmegaConf.to_container(value) if isinstance(value, ListConfig) else value)
    return [value]


def _queries(cfg: DictConfig, run, datamodule) -> list[Query]:
    questions = [str(q) for q in _listed(cfg.question)]
    if cfg.image is not None:
        if cfg.question_id is not None or cfg.question_types:
            raise ConfigError(
                "image=... asks questions about that image; question_id / question_types pick task "
                "samples instead: give one or the other"
            )
        return image_queries(run.cfg.vision, datamodule, cfg.image, questions, device=cfg.device)
    if len(questions) > 1:
        raise ConfigError(
            "question=[...] with several questions needs image=...; for task samples give one "
            "question (it replaces each sample's own)"
        )
    ids, types = _listed(cfg.question_id), [str(t) for t in _listed(cfg.question_types)]
    if not ids and not types:
        raise ConfigError(
            'nothing to draw: give image=<file> question="...", question_id=<id or list> or '
            "question_types=[...] (task samples of the run's test split)"
        )
    return task_queries(
        datamodule,
        split=cfg.split,
        question_ids=ids,
        question_types=types,
        per_type=int(cfg.per_type),
        question=questions[0] if questions else None,
        image_dir=cfg.image_dir,
        image_size=int(run.cfg.vision.image_size),
        device=cfg.device,
    )


def visualize(cfg: DictConfig) -> list[Path]:
    """Draws every chosen question of ``cfg.run_dir``'s run into ``cfg.out_dir``; returns the PNGs."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if int(cfg.block_top_k) < 0:
        raise ConfigError(f"block_top_k={cfg.block_top_k} must be >= 0")
    run = load_memory_run(cfg.run_dir, cfg.get("data_dir"), cfg.device)
    grid = grid_shape(run.memory, run.built.visual.grid)
    datamodule = data_module(run)
    generation = OmegaConf.to_container(run.cfg.task.generation)
    wanted = _listed(cfg.tokens)
    out_dir = Path(cfg.out_dir)
    written, records = [], []
    for query in _queries(cfg, run, datamodule):
        tokens = choose(question_tokens(datamodule.collate, query.sample, query.prompt_row()), wanted)
        located = locate(run.model, query.batch, tokens.positions, grid, generation, int(cfg.block_top_k))
        path = draw_question(
            out_dir / f"{query.name}.png",
            image=query.image,
            question=query.question,
            answer=located.answer,
            maps=located.maps.numpy(),
            labels=tokens.labels,
            layer_maps=located.layer_maps.numpy() if cfg.per_layer else None,
            sites=located.sites,
            blocked=located.blocked,
            answer_blocked=located.answer_blocked,
            reference=query.reference,
        )
        log.info(
            "%s: %r -> %r%s",
            path,
            query.question,
            located.answer,
            f" (blocked {located.blocked}: {located.answer_blocked!r})" if located.blocked else "",
        )
        written.append(path)
        records.append(
            {
                "png": path.name,
                "question_id": query.sample.get("question_id"),
                "question": query.question,
                "reference": query.reference,
                "answer": located.answer,
                "tokens": tokens.labels,
                "positions": tokens.positions,
                "grid": list(grid),
                "sites": located.sites,
                "maps": located.maps.tolist(),
                "blocked": located.blocked,
                "answer_blocked": located.answer_blocked,
            }
        )
    write_text_atomic(
        out_dir / SUMMARY,
        json.dumps(
            {"run_dir": str(cfg.run_dir), "method": run.cfg.method.name, "questions": records}, indent=2, default=str
        ),
    )
    log.info("%d plots written to %s", len(written), out_dir)
    return written


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="visualize")
def main(cfg: DictConfig) -> None:
    visualize(cfg)


if __name__ == "__main__":
    main()
