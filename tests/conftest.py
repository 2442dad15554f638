"""Shared fixtures: tiny models and data, and a runner for the real CLI."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distillab.core.config import ConfigError
from distillab.data import DigitsDataModule
from distillab.models import build_vit

# The real data sets beside the checkout (absent on a user's fresh clone: tests that need them skip).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Small enough that one epoch over digits takes about a second on 2 cores.
# Teacher and student differ in depth and width (feature losses map layers and project widths).
TINY_TEACHER = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, patch_size=2)
TINY_STUDENT = dict(hidden_size=16, num_layers=1, num_heads=1, intermediate_size=32, patch_size=2)
# The same sizes as a config group (src/distillab/conf/debug/tiny.yaml), so a user can run them too.
TINY_OVERRIDES = ["debug=tiny"]


def config_error_key(make) -> str:
    """The key a ConfigError raised by ``make()`` names (fails if none is raised)."""
    with pytest.raises(ConfigError) as err:
        make()
    return err.value.key


def stored_teachers(teachers_dir: Path) -> list[Path]:
    """Teacher entries of a store (its cached outputs live beside them, under outputs/)."""
    return [p for p in teachers_dir.iterdir() if (p / "weights.safetensors").is_file()]


def cached_outputs(teachers_dir: Path) -> list[Path]:
    return [p for p in (teachers_dir / "outputs").iterdir() if p.is_dir()]


@pytest.fixture
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    return dm


@pytest.fixture
def tiny_vit(digits):
    def make(**shape):
        return build_vit(**digits.model_kwargs, **{**TINY_TEACHER, **shape})

    return make


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess, run_dir: Path):
        self.returncode, self.stdout, self.stderr, self.run_dir = proc.returncode, proc.stdout, proc.stderr, run_dir

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


class Zygote:
    """Runs ``distillab`` commands as children forked from one process that imported distillab
    once (tests/cli_zygote.py): real processes, seconds faster to start than ``python -m``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_zygote.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def _answer(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the test zygote ended (exit {self.proc.wait()})")
        return json.loads(line)

    def run(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        timeout: float = 600,
        kill_when: Path | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> subprocess.CompletedProcess:
        """``distillab <args>``; SIGKILLed as soon as ``kill_when`` exists (it must appear first).
        ``on_start(pid)`` is called once the command runs."""
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"argv": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = self._answer(60)["pid"]
            if on_start is not None:
                on_start(pid)
            deadline, killed, answer = time.monotonic() + timeout, False, None
            while answer is None:
                if kill_when is not None and not killed and kill_when.exists():
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    self._answer(60)
                    raise AssertionError(f"distillab {' '.join(args)} ran past {timeout} s")
                answer = self._answer(0.02)
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if kill_when is not None and not killed:
            raise AssertionError(f"ended (exit {answer['returncode']}) before {kill_when} appeared:\n{stderr[-3000:]}")
        return subprocess.CompletedProcess(args, answer["returncode"], stdout, stderr)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    forks = Zygote()
    yield forks
    forks.close()


CLI_ENV = {"HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "DISTILLAB_DATA": str(SHARED_DATA)}


@pytest.fixture
def cli(tmp_path, zygote):
    """Run ``distillab`` in a process of its own with its outputs and teacher store under tmp_path."""
    counter = {"n": 0}

    def run(
        *args: str,
        tiny: bool | list[str] = True,
        teachers_dir: Path | None = None,
        multirun: bool = False,
        kill_when: str | None = None,
    ) -> CLIResult:
        """``kill_when``: a path under the run's folder; the process is killed (SIGKILL, as by a
        pre-emption) as soon as it exists."""
        counter["n"] += 1
        run_dir = tmp_path / f"run{counter['n']}"
        dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        # The tiny sizes come first so that a test's own overrides win (Hydra keeps the last).
        cmd = [
            *(["-m"] if multirun else []),
            *(TINY_OVERRIDES if tiny is True else tiny or []),
            *args,
            f"{dir_key}={run_dir}",
            f"paths.teachers_dir={teachers_dir or tmp_path / 'teachers'}",
        ]
        env = {**os.environ, **CLI_ENV}
        proc = zygote.run(cmd, env, tmp_path, kill_when=run_dir / kill_when if kill_when else None)
        return CLIResult(proc, run_dir)

    return run


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, built once a session (MLflow's schema migrations take
    seconds); tests copy it rather than migrate their own."""
    pytest.importorskip("mlflow", reason="pip install mlflow-skinny (or pip install -e '.[track]')")
    from mlflow.tracking import MlflowClient

    template = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(f"sqlite:///{template}").search_experiments()
    return template
