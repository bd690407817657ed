"""hydra/launcher=slurm: the submitit SLURM launcher, with its resources tied to the trainer config."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from hydra.utils import get_class
from omegaconf import DictConfig

import memvp_lab.train  # noqa: F401  registers the resolvers of the run folder names (pid)
from memvp_lab.config.compose import compose_config

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
DDP4 = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"]


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` with its ``hydra`` node, as a multirun would compose it."""
    return compose_config(overrides, return_hydra_config=True)


def instantiate_launcher(cfg: DictConfig) -> Launcher:
    """The launcher as Hydra's sweeper builds it: from ``cfg.hydra.launcher``, inside the full config."""
    return Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=None, callbacks=None),  # only stored by setup()
        task_function=lambda cfg: None,
        config=cfg,
    )


def test_launcher_resources_follow_the_trainer():
    cfg = compose_with_hydra(DDP4)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 1)
    assert cfg.trainer.devices == 4 and cfg.trainer.num_nodes == 1
    assert launcher.setup == []
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0
    assert launcher.partition is None and launcher.account is None and launcher.qos is None


def test_nodes_follow_trainer_num_nodes_and_default_to_one():
    assert compose_with_hydra([*DDP4, "trainer.num_nodes=2"]).hydra.launcher.nodes == 2
    gpu = compose_with_hydra(["hydra/launcher=slurm", "trainer=gpu"])  # gpu.yaml has no num_nodes
    assert (gpu.hydra.launcher.nodes, gpu.hydra.launcher.gpus_per_node, gpu.hydra.launcher.tasks_per_node) == (1, 1, 1)


def test_header_command_composes():
    """The command in slurm.yaml's header: the experiment's trainer=gpu gives way to trainer=ddp."""
    cfg = compose_with_hydra(["experiment=table1", *DDP4, "hydra.launcher.partition=gpu"])
    assert cfg.trainer.strategy == "ddp"
    launcher = cfg.hydra.launcher
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes, launcher.partition) == (4, 4, 1, "gpu")
    assert launcher.submitit_folder == "multirun/table1/.submitit/%j"


def test_launcher_class_is_importable_and_instantiates_with_resolved_resources():
    cfg = compose_with_hydra([*DDP4, "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    cls = get_class(cfg.hydra.launcher._target_)
    assert issubclass(cls, Launcher)
    launcher = instantiate_launcher(cfg)
    assert type(launcher) is cls
    params = launcher.params
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (4, 4, 2)
    assert params["partition"] == "gpu" and params["setup"] == []
    assert params["submitit_folder"].endswith("/.submitit/%j") and "${" not in params["submitit_folder"]


def _fake_slurm_bin(tmp_path: Path) -> Path:
    """``srun`` (submitit looks for it) and an ``sbatch`` that keeps the script it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f'#!/bin/sh\ncp "$1" "{tmp_path}/sbatch.sh"\necho "Submitted batch job 4242"\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_sweep_submits_an_sbatch_array_with_one_task_per_gpu(tmp_path, monkeypatch):
    """A two-job sweep goes through submitit up to sbatch (a fake one here: no SLURM needed)."""
    import submitit

    monkeypatch.setenv("PATH", f"{_fake_slurm_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(submitit.Job, "results", lambda self: ["done"])  # no cluster to wait for
    sweep_dir = tmp_path / "sweep"
    cfg = compose_with_hydra(
        [
            *DDP4,
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
            f"hydra.sweep.dir={sweep_dir}",
            'hydra.launcher.setup=["module load cuda"]',
        ]
    )
    launcher = instantiate_launcher(cfg)
    assert launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0) == ["done", "done"]

    sbatch = (tmp_path / "sbatch.sh").read_text()
    for line in (
        "#SBATCH --array=0-1",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=",
        "#SBATCH --time=",
        "module load cuda",
    ):
        assert line in sbatch, line
    assert "#SBATCH --account" not in sbatch and "#SBATCH --mem=" not in sbatch  # null: left out
    srun = next(l for l in sbatch.splitlines() if l.startswith("srun "))
    assert f"{sweep_dir}/.submitit/" in srun and "submitit.core._submit" in srun
    assert list((sweep_dir / ".submitit").glob("4242*/*_submitted.pkl"))  # the pickled jobs


def test_every_launcher_key_is_a_submitit_option():
    """A typo in slurm.yaml would be a new key; the plugin's schema (struct) rejects unknown keys."""
    cfg = compose_with_hydra(DDP4)
    with pytest.raises(Exception, match="gpus_per_nod"):
        compose_with_hydra([*DDP4, "hydra.launcher.gpus_per_nod=4"])
    assert set(cfg.hydra.launcher) >= {
        "gpus_per_node",
        "tasks_per_node",
        "nodes",
        "timeout_min",
        "partition",
        "cpus_per_task",
        "mem_gb",
        "account",
        "qos",
        "submitit_folder",
        "setup",
    }
