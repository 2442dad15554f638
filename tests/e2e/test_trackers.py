"""The trackers through the real CLI: one 2-job sweep logging to TensorBoard, CSV, MLflow and W&B
(offline) at once leaves each model of each job as its own tracked run, with its final metrics."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.e2e

INSTALL = "pip install mlflow-skinny wandb (or pip install -e '.[track]')"
pytest.importorskip("mlflow", reason=INSTALL)
pytest.importorskip("wandb", reason=INSTALL)

# One epoch of 3 batches each, no baseline, no compression report: a job is a few seconds.
QUICK = [
    "teacher.max_epochs=1",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "baseline=false",
    "compression.report=false",
]
ROLES = ("teacher", "student")


def test_a_sweep_leaves_one_tracked_run_per_model_and_job(cli, tmp_path, mlflow_template):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    # MLflow's store under paths.log_dir (<cwd>/outputs): a copy of the session's empty one.
    store = tmp_path / "outputs" / "mlflow.db"
    store.parent.mkdir()
    shutil.copy(mlflow_template, store)

    result = cli("experiment=digits_kd", "logger=[many,wandb]", "loss.alpha=0.5,0.9", *QUICK, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [result.run_dir / "0", result.run_dir / "1"]
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]

    # MLflow: the sweep is one experiment, each model of each job its own run, named apart.
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    runs = mlflow.search_runs(experiment_names=[str(result.run_dir)])
    assert sorted(runs["tags.distillab.role"]) == ["student", "student", "teacher", "teacher"]
    assert runs["tags.mlflow.runName"].nunique() == 4 and set(runs["status"]) == {"FINISHED"}
    for role in ROLES:
        mine = runs[runs["tags.distillab.role"] == role]
        assert sorted(mine["params.loss.alpha"]) == ["0.5", "0.9"]
        assert sorted(mine["metrics.final/acc"]) == pytest.approx(sorted(m[role]["test"]["acc"] for m in metrics))
    assert runs["metrics.final/retention"].notna().all()

    for job, m in zip(jobs, metrics):
        for role in ROLES:
            # CSV: every model its own folder, its final metrics in the last row.
            assert "final/acc" in (job / "csv" / role / "metrics.csv").read_text().splitlines()[0]
            # TensorBoard: the hparams summary (the HParams tab) with the final metrics.
            events = EventAccumulator(str(job / "tensorboard" / role))
            events.Reload()
            content = events.PluginTagToContent("hparams")
            info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
            assert {"final/acc", "final/f1", "final/retention"} <= {i.name.tag for i in info.metric_infos}
            assert events.Scalars("final/acc")[-1].value == pytest.approx(m[role]["test"]["acc"])
        assert "final/agreement" in events.Tags()["scalars"]  # the student's

    # W&B, offline: nothing uploaded, one run id per model and job.
    offline = sorted(p.name for job in jobs for p in (job / "wandb").glob("offline-run-*"))
    ids = {name.split("-", 3)[3] for name in offline}  # offline-run-<time>-<run id>
    assert len(offline) == 4 and len(ids) == 4
