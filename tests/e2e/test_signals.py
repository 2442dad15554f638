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


def test_sigterm_stops_a_run_that_a_second_command_leaves_alone_and_the_same_command_finishes(tmp_path, zygote):
    args = ("teacher.max_epochs=1", "trainer.max_epochs=2")
    first_dir = tmp_path / "run1"
    first = start_until(command(tmp_path, "run1", *args), tmp_path, first_dir / "checkpoints/student/last.ckpt")
    first.send_signal(signal.SIGSTOP)  # alive and holding its folder, as a slow training would
    try:
        second = zygote.run(command(tmp_path, "run2", *args)[3:], ENV, tmp_path)
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

    again = zygote.run(command(tmp_path, "run3", *args)[3:], ENV, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming student from" in again.stdout + again.stderr
    metrics = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert metrics["resumed_in"] == str(first_dir) and metrics["teachers"][0]["source"] == "store"
    assert json.loads((first_dir / "metrics.json").read_text())["student"] == metrics["student"]


EVERY_SIGNAL = ("SIGTERM", "SIGINT", "SIGKILL")
STAGES = ("teacher:fit", "student:fit", "student:test")  # teacher training, student training, the test pass
EXIT = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -signal.SIGKILL}
DURING = {"teacher:fit": "during teacher training", "student:fit": "during student training"}
DURING["student:test"] = "during the student's test pass"


def signalled(tmp_path: Path, run: str, plan: list[str]) -> list[str]:
    """The command, with the callback that sends ``plan``'s signals (tests/signal_at.py)."""
    state = tmp_path / f"{run}.sent"
    callback = (
        f"+callbacks.signal_at={{_target_:signal_at.SignalAt,dirpath:null,plan:[{','.join(plan)}],state:{state}}}"
    )
    return command(tmp_path / run, "run", "teacher.max_epochs=2", "trainer.max_epochs=2", callback)


def test_every_signal_in_every_stage_leaves_a_run_the_same_command_finishes_as_if_never_stopped(tmp_path, zygote):
    def run(cmd: list[str]) -> subprocess.CompletedProcess:  # the test's zygote imports tests/signal_at.py
        return zygote.run(cmd[3:], ENV, tmp_path, timeout=300)

    plan = [f"{stage}:{name}" for stage in STAGES for name in EVERY_SIGNAL]
    cmd = signalled(tmp_path, "stopped", plan)
    run_dir = tmp_path / "stopped" / "run"
    for step in plan:  # one process per signal: each continues the run and is stopped at the next step
        proc = run(cmd)
        stage, name = step.rsplit(":", 1)
        assert proc.returncode == EXIT[name], f"{step}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        if name != "SIGKILL":  # SIGKILL leaves no word: nothing can run
            assert (
                last_line(proc.stderr)
                == f"distillab: interrupted by {name} {DURING[stage]}; the same command continues it"
            )
        assert not (run_dir / "metrics.json").exists(), f"{step}: a run cut short has no metrics"
    finished = run(cmd)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (tmp_path / "stopped.sent").read_text().splitlines() == plan  # every signal was sent, in order

    reference = run(signalled(tmp_path, "whole", []))
    assert reference.returncode == 0, reference.stderr[-3000:]
    stopped, whole = (json.loads((tmp_path / r / "run" / "metrics.json").read_text()) for r in ("stopped", "whole"))
    assert stopped["teachers"][0]["test"] == whole["teachers"][0]["test"]
    assert stopped["student"]["test"] == whole["student"]["test"]
