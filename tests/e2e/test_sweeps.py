"""Sweeps beyond Hydra's grid: an Optuna search (hparams_search=kd_optuna), jobs side by side
on this machine (hydra/launcher=local_parallel) and a SLURM job array (hydra/launcher=slurm),
the last one up to the sbatch script, with fake ``srun``/``sbatch`` on PATH."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

from conftest import stored_teachers

pytestmark = pytest.mark.e2e

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[sweeps]'")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweeps]'")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweeps]'")

# One epoch each, no baseline and no compression report: a job is a couple of seconds.
QUICK = ["teacher.max_epochs=1", "trainer.max_epochs=1", "baseline=false", "compression.report=false"]
SEARCHED = {"loss.temperature": (1.0, 8.0), "loss.alpha": (0.1, 0.95), "optimizer.lr": (1e-4, 1e-2)}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_optuna_search_reports_the_best_trial_and_trains_the_teacher_once(cli, tmp_path):
    result = cli("hparams_search=kd_optuna", "hydra.sweeper.n_trials=3", *QUICK, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(result.run_dir)
    assert len(jobs) == 3
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    objectives = [m["objective"] for m in metrics]
    assert all(0.0 <= v <= 1.0 for v in objectives)
    # Each trial ran with its own sampled values, inside the search space.
    trials = [yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) for job in jobs]
    sampled = [{k: float(v) for k, v in (o.split("=", 1) for o in t) if k in SEARCHED} for t in trials]
    assert all(set(s) == set(SEARCHED) for s in sampled)
    assert len({tuple(sorted(s.items())) for s in sampled}) == 3
    assert all(lo <= s[k] <= hi for s in sampled for k, (lo, hi) in SEARCHED.items())

    best = yaml.safe_load((result.run_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == set(SEARCHED)
    assert best["best_value"] == pytest.approx(max(objectives))
    assert best["best_params"] in [{k: pytest.approx(v) for k, v in s.items()} for s in sampled]
    # A search needs only the objective: no baseline, no compression report.
    assert all("baseline" not in m for m in metrics)
    # The first trial trained the teacher; the others read it from the store.
    assert sorted(m["teachers"][0]["source"] for m in metrics) == ["store", "store", "trained"]
    assert len(stored_teachers(tmp_path / "teachers")) == 1


def test_parallel_jobs_train_their_shared_teacher_once(cli, tmp_path):
    result = cli(
        "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "loss.alpha=0.5,0.9", *QUICK, multirun=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(result.run_dir)
    assert len(jobs) == 2
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert all(not math.isnan(m["objective"]) for m in metrics)
    # Both needed the same teacher, not yet stored: one trained it, the other waited for it.
    assert sorted(m["teachers"][0]["source"] for m in metrics) == ["store", "trained"]
    assert len(stored_teachers(tmp_path / "teachers")) == 1
    # They ran at the same time: each started (Hydra wrote its .hydra/) before the other ended.
    starts = [(job / ".hydra" / "overrides.yaml").stat().st_mtime for job in jobs]
    ends = [(job / "metrics.json").stat().st_mtime for job in jobs]
    assert max(starts) < min(ends)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """``srun`` (submitit looks for it) and an ``sbatch`` that keeps the script it is given and
    refuses it, so that nothing is submitted and the sweep stops there. Returns the kept script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: not submitted (test)" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def sbatch_options(script: Path) -> dict[str, str]:
    lines = [line[len("#SBATCH --") :] for line in script.read_text().splitlines() if line.startswith("#SBATCH --")]
    return dict(line.split("=", 1) if "=" in line else (line, "") for line in lines)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # One GPU, one task: trainer=default (devices 1).
        ([], {"nodes": "1", "ntasks-per-node": "1", "gpus-per-node": "1"}),
        # DDP on 4 GPUs on each of 2 nodes: one task per GPU, as Lightning needs under SLURM.
        (
            ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            {"nodes": "2", "ntasks-per-node": "4", "gpus-per-node": "4"},
        ),
    ],
    ids=["one_gpu", "ddp_2x4"],
)
def test_slurm_launcher_writes_one_sbatch_array(cli, fake_slurm, overrides, expected):
    result = cli(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        *overrides,
        "seed=1,2",
        tiny=False,
        multirun=True,
    )
    assert fake_slurm.is_file(), result.stdout[-2000:] + result.stderr[-3000:]
    assert result.returncode != 0 and "not submitted (test)" in result.stderr
    options = sbatch_options(fake_slurm)
    assert options == {
        **options,
        **expected,
        "partition": "gpu",
        "time": "90",
        "cpus-per-task": "4",
        "mem": "32GB",
        "job-name": "distillab",
        "array": "0-1%2",
        "signal": "USR2@120",
    }
    text = fake_slurm.read_text()
    submitit = result.run_dir / ".submitit"
    # srun starts the tasks (the DDP ranks), each running the pickled job of its array index.
    assert f"srun --unbuffered --output {submitit}/%A_%a/%A_%a_%t_log.out" in text
    assert text.rstrip().endswith(f"-m submitit.core._submit {submitit}/%j")
    assert len(list(submitit.glob("*.pkl"))) == 2  # one pickled job per seed
    assert not any(result.run_dir.glob("*/metrics.json"))  # nothing ran here
