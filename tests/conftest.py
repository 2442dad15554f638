"""Shared fixtures: tiny models and data, and a runner for the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def kill_on(
    cmd: list[str], env: dict[str, str], cwd: Path, path: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``cmd`` and SIGKILL it once ``path`` exists (fails if it ends before that)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd) as proc:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                raise AssertionError(
                    f"ended (exit {proc.returncode}) before {path} appeared:\n{proc.stdout.read()[-3000:]}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{path} did not appear within {timeout} s")
            time.sleep(0.02)
        proc.kill()
        out = proc.communicate()[0]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.fixture
def cli(tmp_path):
    """Run ``distillab`` in a subprocess with its outputs and teacher store under tmp_path."""
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
            sys.executable,
            "-m",
            "distillab.cli",
            *(["-m"] if multirun else []),
            *(TINY_OVERRIDES if tiny is True else tiny or []),
            *args,
            f"{dir_key}={run_dir}",
            f"paths.teachers_dir={teachers_dir or tmp_path / 'teachers'}",
        ]
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "DISTILLAB_DATA": str(SHARED_DATA)}
        if kill_when is None:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
            return CLIResult(proc, run_dir)
        return CLIResult(kill_on(cmd, env, tmp_path, run_dir / kill_when), run_dir)

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
