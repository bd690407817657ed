"""Efficiency benchmarks: ``python -m memvp_lab.bench study=<name>`` (conf/study/<name>.yaml).

    python -m memvp_lab.bench                                   # the default study (conf/bench.yaml)
    python -m memvp_lab.bench study=fig4_left                   # one study
    python -m memvp_lab.bench -m study=table1_flops,fig4_left   # several, one folder each
    make bench                                                  # every CPU-sized study, then a summary

Each study writes ``bench.json`` (every number), ``bench.md`` (the table) and ``bench.png`` into its
output folder. Studies are described in ``memvp_lab.benchmark``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from memvp_lab.benchmark import compare, cost_scaling, flops_table, overhead, plots, prefix_cache_study, text_length
from memvp_lab.config.schemas import register_configs
from memvp_lab.paths import config_dir, write_text_atomic
from memvp_lab.results.records import machine, package_versions

log = logging.getLogger(__name__)
register_configs()

STUDIES = {
    "compare": compare,
    "cost_scaling": cost_scaling,
    "flops_table": flops_table,
    "text_length": text_length,
    "overhead": overhead,
    "prefix_cache": prefix_cache_study,
}


def release_memory() -> None:
    """Frees the models of a finished study before the next one in the same process: their hooks
    form reference cycles, and glibc keeps freed heap pages unless asked to return them."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def run_study(study: DictConfig, out: Path) -> dict:
    """Runs one study and writes its json, table and plot into ``out``."""
    if study.kind not in STUDIES:
        raise ValueError(f"study.kind={study.kind!r}: expected one of {sorted(STUDIES)}")
    module = STUDIES[study.kind]
    torch.manual_seed(study.get("seed", 0))
    result = module.run(study)
    result["machine"] = machine()
    result["versions"] = package_versions()
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.json", json.dumps(result, indent=2))
    text = (
        module.table(result)
        + f"\n\nMeasured on {result['machine']['cpu']}, {result['machine']['torch_threads']} threads.\n"
    )
    write_text_atomic(out / "bench.md", text)
    getattr(plots, study.kind)(result, out / "bench.png")
    release_memory()
    log.info("\n%s\nwritten to %s", text, out)
    return result


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="bench")
def main(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    run_study(cfg.study, Path(cfg.output_dir))


if __name__ == "__main__":
    main()
