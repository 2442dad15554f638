"""RunMetrics: metrics.json read and written back unchanged, byte for byte."""

from __future__ import annotations

import json

import pytest

from distillab.run.metrics import MetricsError, RunMetrics


def run_json() -> dict:
    """A run's metrics.json as the pipeline writes it (a checkpoint teacher: store_key null)."""
    teacher = {"role": "teacher", "params": 1000, "test": {"acc": 0.9, "f1": 0.89}, "source": "checkpoint"}
    teacher["store_key"] = None
    return {
        "stage": "all",
        "mode": "offline",
        "seed": 1,
        "git_commit": None,
        "data": {"train": 10, "val": 2, "test": 3},
        "seconds": {"teacher": 1.5, "total": 3.0},
        "val": {"teacher": 0.8, "student": 0.7},
        "throughput": {"student": {"epoch_seconds": [0.1, 0.2], "items_per_s": None}},
        "objective": 0.7,
        "teachers": [teacher],
        "teacher": teacher,
        "student": {"params": 100, "test": {"acc": 0.8, "agreement": 0.85}, "test_by_domain": {"0": 0.8}},
        "teacher_cache": {"mode": "auto", "splits": {"train": {"bytes": 8, "topk": None}}},
        "reference_acc": 0.9,
        "retention": 0.8 / 0.9,
        "param_ratio": 0.1,
    }


def test_a_run_s_metrics_json_is_written_back_unchanged(tmp_path):
    source = tmp_path / "metrics.json"
    source.write_text(json.dumps(run_json(), indent=2, sort_keys=True) + "\n")
    metrics = RunMetrics.read(source)
    assert metrics.teacher["store_key"] is None and metrics.student["test"]["agreement"] == 0.85
    assert [role for role, _ in metrics.entries()] == ["teacher", "student"]
    metrics.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == source.read_text()
    # Keys the run did not write stay absent; git_commit and objective are written even when null.
    written = metrics.to_json()
    assert "baseline" not in written and "compression" not in written and "reused_from" not in written
    assert written["git_commit"] is None


def test_what_is_not_a_run_s_metrics_is_refused():
    with pytest.raises(MetricsError, match="no 'stage'"):
        RunMetrics.from_json({"test": {"acc": 0.5}})  # a teacher store's metrics.json
    with pytest.raises(MetricsError, match="unknown key 'studnet'"):
        RunMetrics.from_json({**run_json(), "studnet": {}})


def test_an_older_run_with_one_teacher_reads_as_a_list_of_one():
    old = {k: v for k, v in run_json().items() if k != "teachers"}
    metrics = RunMetrics.from_json(old)
    assert metrics.teachers == [old["teacher"]] and metrics.entry("teacher") is old["teacher"]
    with pytest.raises(KeyError):
        metrics.entry("baseline")
