"""Pruning, int8 and ONNX export through the real CLI, on tiny models."""

import pytest
from test_methods_cli import logged_scalars

pytestmark = pytest.mark.e2e

# The compression steps and their report do not depend on how well the models learned: one epoch
# each. (The HF export stays on: the pruned student's export runs only here.)
ONE_EPOCH = ["teacher.max_epochs=1", "trainer.max_epochs=1"]

ROWS = {
    "params",
    "nonzero_params",
    "dense_bytes",
    "compressed_bytes",
    "latency_ms_b1",
    "latency_ms_b64",
    "test_acc",
    "retention",
}


def test_kd_prune_reports_the_sparse_student_next_to_the_dense_one(cli):
    result = cli("experiment=digits_kd_prune", "pruning.recovery_epochs=1", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["pruned"]["pruning"]["sparsity"] == pytest.approx(0.8, abs=0.005)
    rows = m["compression"]
    assert set(rows) == {"teacher", "student", "pruned"} and all(ROWS <= set(r) for r in rows.values())
    assert rows["pruned"]["params"] == rows["student"]["params"]
    assert rows["pruned"]["nonzero_params"] < 0.6 * rows["student"]["nonzero_params"]
    assert rows["pruned"]["compressed_bytes"] < rows["student"]["compressed_bytes"]
    assert rows["pruned"]["dense_bytes"] == rows["student"]["dense_bytes"]  # zeros are still stored densely
    assert "final/compression/nonzero_params" in logged_scalars(result.run_dir, "pruned")  # run/tracking.py
    report = (result.run_dir / "report.md").read_text()
    assert "| pruned |" in report and "bytes (zlib)" in report


def test_compress_chain_heads_int8_onnx(cli):
    result = cli("experiment=digits_compress", "pruning.recovery_epochs=1", "model.student.num_heads=2", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    rows = m["compression"]
    assert set(rows) == {"teacher", "student", "pruned", "int8"}
    assert rows["pruned"]["params"] < rows["student"]["params"]  # heads really removed
    assert rows["int8"]["dense_bytes"] < rows["pruned"]["dense_bytes"]
    assert all(r["latency_ms_b64"] > 0 and 0 <= r["test_acc"] <= 1 for r in rows.values())
    assert m["onnx"]["top1_agreement"] >= 0.999 and m["onnx"]["samples"] == 270
    assert (result.run_dir / "student.onnx").is_file()


def test_gradual_pruning_during_distillation(cli):
    result = cli(
        "experiment=digits_kd",
        "pruning=gradual",
        "pruning.start_step=0",
        "pruning.end_step=30",
        "pruning.frequency=5",
        "baseline=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = result.metrics["compression"]
    assert rows["student"]["nonzero_params"] < rows["student"]["params"]
    assert "pruning/sparsity" in logged_scalars(result.run_dir, "student")
