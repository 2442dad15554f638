"""Killed runs and sweeps continue where they stopped when the same command runs again."""

import json

import pytest

from conftest import TINY_OVERRIDES

pytestmark = pytest.mark.e2e

# Long enough to be killed mid-way (about 0.5 s an epoch), with the state a resume must carry:
# gradual pruning masks and their schedule, FitNets' learned projection, optimizer and scheduler.
BASE = [*TINY_OVERRIDES, "teacher.max_epochs=5", "trainer.max_epochs=5", "baseline=false", "compression.report=false"]
RESUMABLE = [
    *BASE,
    "loss=fitnet",
    "pruning=gradual",
    "pruning.start_step=10",
    "pruning.end_step=80",
    "pruning.frequency=10",
]


def test_killed_run_resumes_from_its_last_checkpoint_and_ends_as_if_never_stopped(cli):
    killed = cli(tiny=RESUMABLE, kill_when="checkpoints/student/last.ckpt.sha256")
    assert not (killed.run_dir / "metrics.json").exists(), "killed before the end"

    again = cli(tiny=RESUMABLE)  # the same command: a new folder, continuing the killed run in its own
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing the interrupted run in" in again.stdout + again.stderr
    assert "resuming student from" in again.stdout + again.stderr
    resumed = again.metrics
    assert resumed["resumed_in"] == str(killed.run_dir)
    assert json.loads((killed.run_dir / "metrics.json").read_text())["student"] == resumed["student"]
    assert resumed["teachers"][0]["source"] == "store", "the teacher trained before the kill is reused"

    fresh = cli(tiny=[*RESUMABLE, "ckpt_path=null"])  # the same config, never interrupted
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "resumed_in" not in fresh.metrics
    assert resumed["student"]["test"] == fresh.metrics["student"]["test"]
    assert resumed["val"] == fresh.metrics["val"]
    assert resumed["student"]["test"]["acc"] > 0.2, "a student that learned something (chance is 0.1)"


def test_rerun_sweep_skips_finished_jobs_and_resumes_the_killed_one(cli):
    # Two epochs a job: job 1 is killed after its first.
    sweep = [*BASE, "teacher.max_epochs=1", "trainer.max_epochs=2", "compression.hf=false", "loss.alpha=0.5,0.9"]
    first = cli(tiny=sweep, multirun=True, kill_when="1/checkpoints/student/last.ckpt.sha256")
    assert (first.run_dir / "0" / "metrics.json").is_file() and not (first.run_dir / "1" / "metrics.json").exists()

    again = cli(tiny=sweep, multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    done = [json.loads((again.run_dir / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert done[0]["reused_from"] == str(first.run_dir / "0")
    assert done[1]["resumed_in"] == str(first.run_dir / "1")
    assert "resuming student from" in again.stdout + again.stderr
    summary = again.stdout[-3000:]
    assert "reused" in summary and "continued" in summary  # the sweep's table
