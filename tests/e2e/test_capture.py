"""stage=capture: the teacher's outputs written as shards ahead of training, resumed after a
SIGKILL to the same shards, read by later runs (a sweep never runs the teacher), and split
between DDP ranks."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import stored_teachers

pytestmark = pytest.mark.e2e

# Digits, 1,257 / 270 / 270 rows: 13 + 3 + 3 shards of 100 rows. MLPs for speed: what is tested
# is the cache's files, not the models.
QUICK = [
    "model/teacher=mlp_1200",
    "model/student=mlp_800",
    "model.teacher.hidden_sizes=[64]",
    "model.student.hidden_sizes=[32]",
    "teacher.max_epochs=1",
    "trainer.max_epochs=1",
    "baseline=false",
    "compression.report=false",
    "compression.hf=false",
    "cache.shard_rows=100",
]
SHARDS = 13 + 3 + 3


def entries(teachers: Path) -> dict[str, dict[str, str]]:
    """Each finished cache entry's shard hashes, by key."""
    return {
        entry.name: json.loads((entry / "manifest.json").read_text())["sha256"]
        for entry in (teachers / "outputs").iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    }


def same_teacher(source: Path, target: Path) -> None:
    """The stored teacher of ``source`` copied into the store ``target`` (not its outputs)."""
    (entry,) = stored_teachers(source)
    shutil.copytree(entry, target / entry.name)


def step_losses(run_dir: Path) -> list[float]:
    with (run_dir / "csv" / "student" / "metrics.csv").open() as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def signal_at(tmp_path: Path, plan: str) -> str:
    state = tmp_path / "sent"
    return f"+callbacks.signal_at={{_target_:signal_at.SignalAt,dirpath:null,plan:[{plan}],state:{state}}}"


def test_a_capture_killed_half_way_finishes_with_the_shards_of_an_uninterrupted_one(cli, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    first = cli("stage=capture", signal_at(tmp_path, "capture:capture:SIGKILL"), teachers_dir=killed, tiny=QUICK)
    assert first.returncode == -9, first.stderr[-3000:]
    (partial,) = (killed / "outputs").glob(".capture-*")
    assert len(list(partial.glob("shard-*.safetensors.json"))) == 2, "two shards finished before the kill"
    assert not entries(killed), "no entry is complete"

    again = cli("stage=capture", signal_at(tmp_path, "capture:capture:SIGKILL"), teachers_dir=killed, tiny=QUICK)
    assert again.returncode == 0, again.stderr[-3000:]
    capture = again.metrics["capture"]
    assert (capture["shards_reused"], capture["shards_computed_here"]) == (2, SHARDS - 2)
    assert not list((killed / "outputs").glob(".capture-*"))

    same_teacher(killed, whole)
    reference = cli("stage=capture", teachers_dir=whole, tiny=QUICK)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert reference.metrics["capture"]["shards_computed_here"] == SHARDS
    assert entries(killed) == entries(whole) and len(entries(whole)) == 3, "train, val, test: equal hashes"


def test_a_captured_entry_is_the_in_run_cache_entry_and_a_sweep_after_it_never_runs_the_teacher(cli, tmp_path):
    captured, in_run = tmp_path / "captured", tmp_path / "in_run"
    capture = cli("stage=capture", teachers_dir=captured, tiny=QUICK)
    assert capture.returncode == 0, capture.stderr[-3000:]
    assert sorted(capture.metrics["capture"]["splits"]) == ["test", "train", "val"]
    assert "Captured teacher outputs, train: 1,257 rows in 13 shards" in (capture.run_dir / "report.md").read_text()

    logged = ["logger=csv", "trainer.log_every_n_steps=1"]
    same_teacher(captured, in_run)
    built = cli(*logged, teachers_dir=in_run, tiny=QUICK)
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.metrics["teacher_cache"]["computed_here"] == 3
    assert entries(in_run) == entries(captured), "the in-run cache writes the captured shards, byte for byte"

    read = cli(*logged, teachers_dir=captured, tiny=QUICK)
    assert read.returncode == 0, read.stderr[-3000:]
    assert read.metrics["teacher_cache"]["computed_here"] == 0
    losses = step_losses(read.run_dir)
    assert len(losses) >= 20 and losses == step_losses(built.run_dir), "the same loss at every step"

    sweep = cli("loss.alpha=0.5,0.9", multirun=True, teachers_dir=captured, tiny=QUICK)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sorted(sweep.run_dir.glob("*/metrics.json"))]
    assert len(jobs) == 2 and all(job["teacher_cache"]["computed_here"] == 0 for job in jobs)
    assert "computed once" not in sweep.stdout + sweep.stderr, "no teacher forward for the cache"


def test_two_ddp_processes_capture_their_own_shards_whose_union_is_the_one_process_capture(cli, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = cli("stage=capture", teachers_dir=one, tiny=QUICK)
    assert single.returncode == 0, single.stderr[-3000:]
    # The teacher from the store's folder: trained under DDP it would have another store key.
    (teacher,) = stored_teachers(one)
    ddp = cli(
        "stage=capture",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"teacher.ckpt_path={teacher}",
        teachers_dir=two,
        tiny=QUICK,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (ddp.run_dir / "train_ddp_process_1.log").is_file(), "a second process ran"
    for split in ddp.metrics["capture"]["splits"].values():
        assert split["by_rank"] == [0, 1], "each rank wrote shards of every split"
    manifests = [json.loads(p.read_text()) for p in (two / "outputs").glob("*/manifest.json")]
    train = next(m for m in manifests if m["rows"] == 1257)
    assert [s["rank"] for s in train["shards"]] == [i % 2 for i in range(13)]
    assert entries(two) == entries(one)
