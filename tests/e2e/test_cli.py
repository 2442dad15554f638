"""The real CLI on tiny configs: the demo, reproducibility, the teacher store, sweeps, stages."""

import json

import pytest

from conftest import SHARED_DATA, cached_outputs, stored_teachers
from errors_table import FILES, PLACEHOLDER, error_of, make_files, read_rows

pytestmark = pytest.mark.e2e

METRICS = {"acc", "f1", "precision", "recall"}


def strip_timings(metrics: dict) -> dict:
    """Everything but wall-clock figures (stage seconds, training throughput, latencies, speed-ups), which
    no seed fixes, and how much of the teacher cache this run computed (a later run reuses it)."""
    kept = {
        k: v
        for k, v in metrics.items()
        if k not in ("seconds", "throughput", "git_commit", "compression", "teacher_cache")
    }
    kept["compression"] = {
        name: {k: v for k, v in row.items() if not k.startswith(("latency", "speedup"))}
        for name, row in metrics.get("compression", {}).items()
    }
    return kept


def test_demo_writes_every_output(cli):
    result = cli("experiment=digits_kd")
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert METRICS <= set(m["teacher"]["test"]) and METRICS | {"agreement"} <= set(m["student"]["test"])
    assert METRICS <= set(m["baseline"]["test"])
    assert m["student"]["params"] < m["teacher"]["params"] and m["teacher"]["params"] > 0
    assert m["retention"] == pytest.approx(m["student"]["test"]["acc"] / m["teacher"]["test"]["acc"])
    assert m["teacher"]["source"] == "trained"
    run = result.run_dir
    assert (run / "config.yaml").is_file() and (run / "report.md").is_file()
    assert "| student |" in (run / "report.md").read_text()
    for role in ("teacher", "student", "baseline"):
        assert (run / "checkpoints" / role / "best.ckpt").is_file()
        assert (run / "checkpoints" / role / "last.ckpt").is_file()
        assert list((run / "tensorboard" / role).glob("events.out.tfevents.*"))
    # the console ends with the summary table
    tail = result.stdout[-2000:]
    assert "teacher" in tail and "student" in tail and "baseline" in tail and "retention" in tail


def test_same_seed_same_metrics_and_damaged_store_entry_is_retrained(cli, tmp_path):
    first = cli("experiment=digits_kd", "baseline=false")
    assert first.returncode == 0, first.stderr[-3000:]
    key = first.metrics["teacher"]["store_key"]
    weights = tmp_path / "teachers" / key / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a run killed while writing, or a bad disk

    second = cli("experiment=digits_kd", "baseline=false")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.metrics["teacher"]["source"] == "trained"
    assert strip_timings(second.metrics) == strip_timings(first.metrics)
    # Retrained with the same seed, the teacher has the same weights: its cached outputs
    # (train, val, test) from the first run are reused, not computed again.
    assert first.metrics["teacher_cache"]["computed_here"] == 3
    reused, built = second.metrics["teacher_cache"], first.metrics["teacher_cache"]
    assert {**reused, "splits": None} == {**built, "computed_here": 0, "splits": None}
    for split, size in reused["splits"].items():  # the same entries, none built this time
        assert size["bytes"] == built["splits"][split]["bytes"] and built["splits"][split]["build_seconds"] >= 0
        assert size["build_seconds"] is None

    third = cli("experiment=digits_kd", "baseline=false")  # reuses the intact entry
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.metrics["teacher"]["source"] == "store"
    assert third.metrics["student"] == first.metrics["student"]


def test_multirun_trains_the_teacher_once(cli, tmp_path):
    result = cli("experiment=digits_kd", "loss.temperature=1,4", "loss.alpha=0.5,0.9", "baseline=false", multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(result.run_dir.glob("*/metrics.json"))
    assert len(runs) == 4
    sources = sorted(json.loads(p.read_text())["teacher"]["source"] for p in runs)
    assert sources == ["store", "store", "store", "trained"]
    assert len(stored_teachers(tmp_path / "teachers")) == 1
    # Its outputs on train, val and test were computed by the first job and read by the others.
    assert len(cached_outputs(tmp_path / "teachers")) == 3
    configs = {(json.loads(p.read_text())["student"]["test"]["acc"], p.parent.name) for p in runs}
    assert len(configs) == 4


def test_stage_teacher_then_distill_from_its_checkpoint_then_baseline(cli, tmp_path):
    teacher = cli("experiment=digits_kd", "stage=teacher")
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    assert set(teacher.metrics) >= {"teacher"} and "student" not in teacher.metrics
    ckpt = teacher.run_dir / "checkpoints" / "teacher" / "best.ckpt"
    distill = cli(
        "experiment=digits_kd", "stage=distill", f"teacher.ckpt_path={ckpt}", teachers_dir=tmp_path / "empty_store"
    )
    assert distill.returncode == 0, distill.stderr[-3000:]
    m = distill.metrics
    assert m["teacher"]["source"] == "checkpoint" and "student" in m and "baseline" not in m
    assert m["teacher"]["test"]["acc"] == pytest.approx(teacher.metrics["teacher"]["test"]["acc"])
    # No teacher is stored (it came from a checkpoint); only its cached outputs are.
    assert [p.name for p in (tmp_path / "empty_store").iterdir()] == ["outputs"]
    baseline = cli("experiment=digits_kd", "stage=baseline")
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    assert set(baseline.metrics) & {"teacher", "student", "baseline"} == {"baseline"}


# The wrong inputs and their messages: the table of docs/errors.md (tests/errors_table.py reads
# it and rewrites its messages with --update).
BAD_INPUTS = read_rows()


# Through the real CLI (a subprocess each, ~4 s of imports): one per kind of failure, from
# Hydra's composition to a value checked deep in the pipeline. The whole table of
# docs/errors.md runs below in one process, through the same compose + pipeline.run the CLI calls.
# Through the real CLI: a Hydra composition error and one of ours (one line, exit code 2); every
# other wrong input is a row of docs/errors.md, run in-process below.
CLI_BAD_INPUTS = [(["data=unknown_data"], "data"), (["loss.alpha=1.5"], "loss.alpha")]


@pytest.mark.parametrize("overrides, key", CLI_BAD_INPUTS, ids=[" ".join(p[0]) for p in CLI_BAD_INPUTS])
def test_bad_input_is_one_clear_error(cli, tmp_path, overrides, key):
    result = cli("experiment=digits_kd", *overrides, tiny=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert key in result.stderr
    assert not (tmp_path / "teachers").exists(), "nothing may be trained before the config is checked"


@pytest.fixture(scope="module")
def error_files(tmp_path_factory):
    """The files the table's rows name by placeholder (<text_file>, <ckpt_3_classes>, ...)."""
    return make_files(tmp_path_factory.mktemp("error_files"))


def test_bad_input_table_is_complete():
    assert len(BAD_INPUTS) >= 30
    assert [row.number for row in BAD_INPUTS] == list(range(1, len(BAD_INPUTS) + 1))
    assert len({tuple(row.overrides) for row in BAD_INPUTS}) == len(BAD_INPUTS), "a case listed twice"
    known = {"<tmp>", "<data>", *FILES}
    for row in BAD_INPUTS:
        assert row.message not in ("", "?"), f"row {row.number} has no message: run tests/errors_table.py --update"
        assert set(PLACEHOLDER.findall(" ".join(row.overrides))) <= known, f"unknown placeholder in {row.id}"


@pytest.mark.parametrize("row", BAD_INPUTS, ids=[row.id for row in BAD_INPUTS])
def test_bad_input_is_a_config_error_before_training(tmp_path, error_files, row):
    if missing := row.missing_data():
        pytest.skip(f"no {', '.join(missing)} in {SHARED_DATA}")
    # error_of fails (ReachedTraining) if the run gets as far as a Lightning fit/validate/test.
    assert error_of(row.overrides, tmp_path, error_files) == row.message, (
        f"docs/errors.md row {row.number}: if the new message is right, run tests/errors_table.py --update"
    )
    assert not list(tmp_path.rglob("weights.*")), "nothing may be trained or stored before the config is checked"
