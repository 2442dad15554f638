"""Signals are honest: a stopped run never exits 0 nor writes metrics.json, and the same
command continues it; a second identical command does not train in a live run's folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED_DATA, TINY_OVERRIDES

pytestmark = pytest.mark.e2e

QUICK = [*TINY_OVERRIDES, "baseline=false", "compression.report=false", "compression.hf=false"]


def command(tmp_path: Path, run: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "distillab.cli",
        *QUICK,
        *args,
        f"hydra.run.dir={tmp_path / run}",
        f"paths.teachers_dir={tmp_path / 'teachers'}",
    ]


ENV = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "DISTILLAB_DATA": str(SHARED_DATA)}


def start_until(cmd: list[str], cwd: Path, path: Path, timeout: float = 300) -> subprocess.Popen:
    """Start ``cmd``; return it, still running, once ``path`` exists."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear (exit {proc.returncode}):\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.02)
    return proc


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_sigterm_stops_a_run_that_a_second_command_leaves_alone_and_the_same_command_finishes(tmp_path):
    args = ("teacher.max_epochs=1", "trainer.max_epochs=2")
    first_dir = tmp_path / "run1"
    first = start_until(command(tmp_path, "run1", *args), tmp_path, first_dir / "checkpoints/student/last.ckpt")
    first.send_signal(signal.SIGSTOP)  # alive and holding its folder, as a slow training would
    try:
        second = subprocess.run(command(tmp_path, "run2", *args), capture_output=True, text=True, env=ENV, cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGTERM)  # a SLURM pre-emption
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)

    assert second.returncode == 5, second.stderr[-3000:]
    assert last_line(second.stderr) == (
        f"distillab: run in use: {first_dir} is being trained by another distillab process (the same config, "
        "started earlier): let it finish, or stop it (this command then continues it), or start a separate run "
        "with ckpt_path=null"
    )
    assert not (tmp_path / "run2" / "checkpoints").exists(), "the second command trained nothing"
    assert first.returncode == 143, stderr[-3000:]
    assert last_line(stderr) == (
        "distillab: interrupted by SIGTERM during student training; the same command continues it"
    )
    assert not (first_dir / "metrics.json").exists(), "a student cut short has no metrics"

    again = subprocess.run(command(tmp_path, "run3", *args), capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming student from" in again.stdout + again.stderr
    metrics = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert metrics["resumed_in"] == str(first_dir) and metrics["teachers"][0]["source"] == "store"
    assert json.loads((first_dir / "metrics.json").read_text())["student"] == metrics["student"]
