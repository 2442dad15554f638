"""distillab-summarize: its maths by hand, then a real tiny sweep through the CLI and the command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distillab.cli import summarize as command
from distillab.run import summary, summary_jobs, summary_outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_metrics(errors: dict[str, int], n_test: int = 10_000, agreement: float = 0.99) -> dict:
    """metrics.json of one job whose models make ``errors[role]`` mistakes on ``n_test`` samples."""
    entry = lambda role: {
        "params": 1000 if role == "teacher" else 100,
        "test": {
            "acc": 1 - errors[role] / n_test,
            "f1": 0.5,
            **({"agreement": agreement} if role == "student" else {}),
        },
    }
    teacher = {"role": "teacher", **entry("teacher")}
    return {
        "stage": "all",
        "seed": 0,
        "teachers": [teacher],
        "teacher": teacher,
        "student": entry("student"),
        "baseline": entry("baseline"),
        "data": {"test": n_test},
        "compression": {"student": {"latency_ms_b64": 2.0}, "teacher": {"latency_ms_b64": 20.0}},
    }


def test_mean_std_and_gap_closed_by_hand():
    assert summary.mean_std([67, 70, 64]) == (67, 3.0)  # deviations -0, 3, -3: sqrt(18 / 2)
    assert summary.mean_std([0.5]) == (0.5, None)
    assert summary.mean_std([]) == (None, None)
    # Hinton et al. 2015, speech: baseline 146 errors, distilled 74, teacher ensemble 67.
    assert summary.gap_closed(err_teacher=67, err_student=74, err_baseline=146) == pytest.approx(72 / 79)
    assert summary.gap_closed(err_teacher=146, err_student=74, err_baseline=146) is None  # no gap to close
    assert summary.gap_closed(err_teacher=None, err_student=74, err_baseline=146) is None

    # Three seeds; the group means are 67 / 74 / 146 errors out of 10,000.
    jobs = [
        fake_metrics({"teacher": t, "student": s, "baseline": b})
        for t, s, b in [(67, 74, 140), (70, 72, 146), (64, 76, 152)]
    ]
    rows = {row["model"]: row for row in summary.summarize_group(jobs)}
    assert list(rows) == ["teacher", "student", "baseline"]
    teacher, student, baseline = rows["teacher"], rows["student"], rows["baseline"]
    assert teacher["n"] == 3 and teacher["params"] == 1000
    assert teacher["acc_mean"] == pytest.approx(1 - 67 / 10_000)
    assert teacher["acc_std"] == pytest.approx(3 / 10_000)
    assert teacher["error_mean"] == pytest.approx(0.67) and teacher["error_std"] == pytest.approx(0.03)
    assert (teacher["test_errors_mean"], teacher["test_errors_std"]) == (67, 3.0)
    assert baseline["test_errors_mean"] == 146 and baseline["test_errors_std"] == pytest.approx(6.0)
    assert student["gap_closed"] == pytest.approx(72 / 79) and student["gap_closed"] == pytest.approx(0.9114, abs=1e-4)
    assert "gap_closed" not in baseline and "gap_closed" not in teacher
    assert student["agreement_mean"] == pytest.approx(0.99) and teacher["agreement_mean"] is None
    assert student["latency_ms_b64_mean"] == 2.0 and baseline["latency_ms_b64_mean"] is None
    # The pipeline's reference accuracy, when given, is the teacher the gap is measured to.
    for job in jobs:
        job["reference_acc"] = 1 - 60 / 10_000
    student = summary.summarize_group(jobs)[1]
    assert student["gap_closed"] == pytest.approx(72 / 86)
    # Without split sizes there are no counts; with one job, no std.
    one = summary.summarize_group([{**jobs[0], "data": {}}])[0]
    assert one["test_errors_mean"] is None and one["acc_std"] is None
    assert summary_outputs.cell(one, "acc", "±") == "0.9933"
    assert summary_outputs.cell(rows["teacher"], "acc", "±") == "0.9933 ± 0.0003"


def test_grouping_defaults_to_the_swept_keys_but_not_the_seed():
    overrides = [{"seed": s, "loss.temperature": t, "experiment": "digits_kd"} for s in "12" for t in "24"]
    assert summary_jobs.default_group_keys(overrides) == ["loss.temperature"]
    assert summary_jobs.parse_overrides(["+a.b=1", "++c=x=y", "seed=2"]) == {"a.b": "1", "c": "x=y", "seed": "2"}
    jobs = [
        summary_jobs.Job(Path(str(i)), o, {"loss": {"temperature": float(o["loss.temperature"])}, "seed": 1}, {})
        for i, o in enumerate(overrides)
    ]
    groups = summary_jobs.group_jobs(jobs, ["loss.temperature", "experiment"])
    assert list(groups) == [(2.0, "digits_kd"), (4.0, "digits_kd")]  # a config group's value: the command line's
    assert [len(g) for g in groups.values()] == [2, 2]
    with pytest.raises(summary_jobs.SummaryError, match="loss.temprature.*top-level keys: loss, seed"):
        summary_jobs.check_keys(jobs, ["loss.temprature"])
    tex = summary_outputs.latex(
        [{"a_b": "x&y", "model": "student", "n": 2, "params": 100.0, "acc_mean": 0.5, "acc_std": 0.25}], ["a_b"]
    )
    assert r"a\_b & model" in tex and r"x\&y & student & 2 & 100 & 0.5000 $\pm$ 0.2500" in tex
    assert tex.startswith(r"\begin{tabular}") and r"\toprule" in tex and r"\bottomrule" in tex


def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distillab.cli.summarize", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_clear_errors(tmp_path):
    for args, message in [((tmp_path / "nope",), "no such folder"), ((tmp_path,), "no jobs")]:
        result = run_script(*args)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "config.yaml").write_text("seed: 1\nloss:\n  temperature: 4\n")
    result = run_script(tmp_path, "--group-by", "loss.temprature")
    assert result.returncode == 2 and "loss.temprature" in result.stderr and "loss, seed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_a_real_sweep_is_summarised_and_a_failed_job_reported(cli, tmp_path):
    # One teacher for the four jobs (teacher.seed), one epoch each: the summary's maths, not the
    # models' accuracy, is under test; the compression table stays (acc_vs_latency.png).
    sweep = cli(
        "experiment=digits_kd",
        "seed=1,2",
        "loss.temperature=2,4",
        "baseline=false",
        "teacher.seed=0",
        "teacher.max_epochs=1",
        "trainer.max_epochs=1",
        "compression.hf=false",
        multirun=True,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.run_dir.glob("*/metrics.json"))
    assert len(jobs) == 4
    crashed = sweep.run_dir / "4" / ".hydra"  # what a job killed before writing its metrics leaves
    crashed.mkdir(parents=True)
    (crashed / "overrides.yaml").write_text("- experiment=digits_kd\n- seed=3\n- loss.temperature=2\n")

    result = run_script(sweep.run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    out = sweep.run_dir / "summary"
    for name in ("summary.csv", "summary.md", "summary.tex"):
        assert (out / name).stat().st_size > 0
    for name in ("acc_vs_params.png", "acc_vs_latency.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert "failed job (no metrics.json):" in result.stdout and str(sweep.run_dir / "4") in result.stdout
    assert "| loss.temperature | model | n |" in result.stdout  # the Markdown table, grouped by the swept key
    assert "Failed jobs (no metrics.json): 1" in (out / "summary.md").read_text()
    assert r"\toprule" in (out / "summary.tex").read_text()

    rows = list(csv.DictReader((out / "summary.csv").open()))
    students = [r for r in rows if r["model"] == "student"]
    assert [r["loss.temperature"] for r in students] == ["2", "4"]
    temperature = lambda job: yaml.safe_load((job / "config.yaml").read_text())["loss"]["temperature"]
    for row in students:
        metrics = [
            json.loads((j / "metrics.json").read_text()) for j in jobs if temperature(j) == int(row["loss.temperature"])
        ]
        accs = [m["student"]["test"]["acc"] for m in metrics]
        assert row["n"] == "2" and float(row["acc_mean"]) == pytest.approx(sum(accs) / 2)
        if all("data" in m for m in metrics):  # split sizes: error counts
            counts = [round((1 - a) * m["data"]["test"]) for a, m in zip(accs, metrics)]
            assert float(row["test_errors_mean"]) == pytest.approx(sum(counts) / 2)
        assert row["failed"] == ("1" if row["loss.temperature"] == "2" else "0")
    assert {r["model"] for r in rows} == {"teacher", "student"}

    # Grouped by seed too: one job per row, so no std; the failed job is a group of its own.
    by_seed = tmp_path / "by_seed"
    assert command.main([str(sweep.run_dir), "--group-by", "seed", "loss.temperature", "--out", str(by_seed)]) == 0
    rows = list(csv.DictReader((by_seed / "summary.csv").open()))
    groups = {(r["seed"], r["loss.temperature"]) for r in rows}
    assert groups == {("1", "2"), ("1", "4"), ("2", "2"), ("2", "4"), ("3", "2")}
    done = [r for r in rows if r["seed"] != "3"]
    assert all(r["n"] == "1" and r["acc_std"] == "" for r in done) and len(done) == 4 * 2
    assert [(r["model"], r["n"], r["failed"]) for r in rows if r["seed"] == "3"] == [("-", "0", "1")]
