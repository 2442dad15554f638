"""The jobs of a sweep folder for ``distillab-summarize``: found, read (config, command line,
metrics through :class:`RunMetrics`) and grouped by config keys."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distillab.run.metrics import MetricsError, RunMetrics

MISSING = object()


class SummaryError(Exception):
    """A problem with the input, reported as one line and exit code 2."""


@dataclass(frozen=True)
class Job:
    path: Path
    overrides: dict[str, str]  # key -> value as typed on the command line
    config: dict[str, Any]
    metrics: RunMetrics | None  # None: the job failed (no metrics.json)


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``['+a.b=1', 'seed=2']`` -> ``{'a.b': '1', 'seed': '2'}`` (Hydra's +, ++, ~ prefixes dropped)."""
    pairs = (str(line).lstrip("+~").partition("=") for line in lines)
    return {key: value for key, _, value in pairs}


def read_metrics(path: Path) -> RunMetrics | None:
    """A run's metrics.json, or None when there is none, it is cut short (a killed job) or it
    is not a run's (a teacher store's entry has one too, without a ``stage``)."""
    try:
        data = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    try:
        return RunMetrics.from_json(data)
    except MetricsError as err:
        raise SummaryError(f"{path / 'metrics.json'}: {err}") from None


def read_job(path: Path) -> Job:
    read = lambda file, default: (yaml.safe_load(file.read_text()) or default) if file.is_file() else default
    # A job that stopped before saving its resolved config still has Hydra's (unresolved) copy.
    config = read(path / "config.yaml", None) or read(path / ".hydra" / "config.yaml", {})
    return Job(path, parse_overrides(read(path / ".hydra" / "overrides.yaml", [])), config, read_metrics(path))


def find_jobs(root: Path) -> list[Job]:
    """Every job folder under ``root`` (itself included), in numeric order of their paths."""
    found = []
    for folder, subdirs, _ in os.walk(root):
        path = Path(folder)
        if (path / ".hydra" / "overrides.yaml").is_file() or read_metrics(path) is not None:
            found.append(path)
            subdirs.clear()  # checkpoints/, tensorboard/ hold no jobs
        else:
            subdirs[:] = [d for d in subdirs if d != ".hydra"]
    order = lambda p: [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.relative_to(root).parts]  # 2 < 10
    return [read_job(p) for p in sorted(found, key=order)]


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def group_value(job: Job, key: str) -> Any:
    """The job's value of ``key``: the resolved config's when it is a plain value, else what the
    command line said (a config group such as ``loss=dkd`` or ``experiment=...``)."""
    value = lookup(job.config, key)
    if value is not MISSING and not isinstance(value, (dict, list)):
        return value
    if key in job.overrides:
        # Typed as the config would be ("2" -> 2), so that a failed job without a config joins its group.
        try:
            typed = yaml.safe_load(job.overrides[key])
        except yaml.YAMLError:
            typed = None
        return typed if isinstance(typed, (int, float, str, bool)) else job.overrides[key]
    return None if value is MISSING else json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_group_keys(overrides: list[dict[str, str]]) -> list[str]:
    """Keys given more than one value across the jobs' command lines, seed excepted (seeds are
    what mean ± std runs over), in the order they first appear."""
    values: dict[str, set[str]] = {}
    for job in overrides:
        for key, value in job.items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 and key != "seed"]


def group_jobs(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """Jobs by their values of ``keys``, groups in ascending order of those values (numbers
    before text, so that mixed types still sort)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(group_value(job, k) for k in keys), []).append(job)
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return dict(sorted(groups.items(), key=lambda kv: [(0, v, "") if number(v) else (1, 0, str(v)) for v in kv[0]]))


def check_keys(jobs: list[Job], keys: list[str]) -> None:
    for key in keys:
        if not any(lookup(j.config, key) is not MISSING or key in j.overrides for j in jobs):
            top = sorted({k for j in jobs for k in j.config})
            raise SummaryError(
                f"--group-by {key}: no job's config.yaml has this key (top-level keys: {', '.join(top[:20]) or 'none'})"
            )
