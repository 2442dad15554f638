"""Continuing runs and sweeps that were interrupted, and skipping the jobs of a sweep that finished.

A run is known by the hash of its resolved config (its *run key*, everything but its output
folder), and ``<paths.log_dir>/index/<run key>`` names the folder where that config last ran.
``ckpt_path`` (top-level) says what to do with it:

- ``auto`` (default): an earlier run of the same config that stopped before the end (it has
  checkpoints, no ``metrics.json``) is continued in its own folder, each training stage from
  its ``last.ckpt``; in a multirun, a job whose config already finished is skipped and its
  metrics are copied into the new sweep folder. So re-running a sweep command finishes it.
- ``last``: continue (or, if it finished, report again) the last run of the same config; an
  error if there is none.
- ``null``: always a new run.
- a run folder: continue that run; its config must be this one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError
from distillab.run.metrics import RunMetrics

log = logging.getLogger(__name__)

MODES = ("auto", "last", None)
VOLATILE = ("ckpt_path",)  # top-level keys that do not change what a run computes


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without what does not change what a run computes: ``ckpt_path`` and
    the output folder (values under it, such as the logger's save_dir, read relative to it)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in VOLATILE:
        plain.pop(key, None)
    output_dir = str(plain.get("paths", {}).pop("output_dir", ""))
    blob = json.dumps(plain, sort_keys=True, default=str)
    return json.loads(blob.replace(output_dir, "<output_dir>") if output_dir else blob)


def run_key(cfg: DictConfig) -> str:
    return hashlib.sha256(json.dumps(_plain(cfg), sort_keys=True).encode()).hexdigest()[:20]


def _index(cfg: DictConfig) -> Path:
    return Path(cfg.paths.log_dir) / "index"


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def has_checkpoints(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*/last.ckpt"))


@dataclass
class Resume:
    """What this run does: ``fresh`` (in its own folder), ``continue`` (in ``run_dir``, from
    its checkpoints) or ``skip`` (``run_dir`` finished this config; reuse its metrics)."""

    action: str
    run_dir: Path | None = None


def _last_run(cfg: DictConfig, key: str) -> Path | None:
    entry = _index(cfg) / key
    if not entry.is_file():
        return None
    run_dir = Path(entry.read_text().strip())
    return run_dir if run_dir.is_dir() and run_dir != Path(cfg.paths.output_dir) else None


def _config_of(run_dir: Path) -> DictConfig | None:
    path = run_dir / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


def _run_folder(given: Any) -> Path:
    """The run folder ``ckpt_path`` names: the folder itself, or the one holding a checkpoint
    given instead (``<run>/checkpoints/<role>/last.ckpt``); any other file is an error."""
    path = Path(str(given)).expanduser()
    if not path.is_file():
        return path
    path = path.absolute()  # a relative last.ckpt has fewer parents than its run folder's
    if path.parent.parent.name != "checkpoints":
        raise ConfigError(
            "ckpt_path",
            given,
            "is a file, not a run folder: give a run's output folder (or a checkpoint in its "
            "checkpoints/<role>/), or auto, last or null",
        )
    return path.parents[2]


def plan_resume(cfg: DictConfig, multirun: bool) -> Resume:
    mode = cfg.get("ckpt_path", "auto")
    key = run_key(cfg)
    if mode not in MODES:  # a run folder
        run_dir = _run_folder(mode)
        earlier = _config_of(run_dir)
        if earlier is None:
            raise ConfigError(
                "ckpt_path",
                mode,
                "is not a run folder (no config.yaml): give a run's output folder, or auto, last or null",
            )
        if run_key(earlier) != key:
            changed = _changed_keys(earlier, cfg)
            raise ConfigError(
                "ckpt_path",
                mode,
                f"was run with another config (differs in {', '.join(changed[:5])}); "
                "a run continues only with the config it started with",
            )
        return Resume("skip" if finished(run_dir) else "continue", run_dir)
    if mode is None:
        return Resume("fresh")
    run_dir = _last_run(cfg, key)
    if run_dir is None:
        if mode == "last":
            raise ConfigError("ckpt_path", mode, f"no earlier run of this config is indexed under {_index(cfg)}")
        return Resume("fresh")
    if finished(run_dir):
        return Resume("skip", run_dir) if multirun or mode == "last" else Resume("fresh")
    return Resume("continue", run_dir) if has_checkpoints(run_dir) or mode == "last" else Resume("fresh")


def register(cfg: DictConfig, run_dir: Path) -> None:
    """Index ``run_dir`` as where this config runs now (a later ``auto`` or ``last`` finds it)."""
    index = _index(cfg)
    index.mkdir(parents=True, exist_ok=True)
    tmp = index / f".{run_key(cfg)}.tmp"
    tmp.write_text(str(run_dir.resolve()))
    tmp.replace(index / run_key(cfg))


def _changed_keys(a: DictConfig, b: DictConfig) -> list[str]:
    """Dotted keys whose values differ between two runs' configs."""
    return _diff(_plain(a), _plain(b), "")


def _diff(a: object, b: object, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b), key=str) for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def copy_results(source: Path, job_dir: Path, note: dict[str, str]) -> RunMetrics:
    """The metrics and report of ``source`` in this job's folder too, so that a sweep's folder
    holds every job's results (what distillab-summarize reads), with ``note`` saying where they
    come from (``reused_from`` or ``resumed_in``)."""
    metrics = replace(RunMetrics.read(source / "metrics.json"), **note)
    job_dir.mkdir(parents=True, exist_ok=True)
    metrics.write(job_dir / "metrics.json")
    for name in ("report.md", "config.yaml"):
        if (source / name).is_file() and not (job_dir / name).is_file():
            shutil.copyfile(source / name, job_dir / name)
    return metrics
