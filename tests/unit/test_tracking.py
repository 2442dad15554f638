"""Trackers (run/tracking.py): each model of a run is its own tracked run, with the flattened config
as parameters and its final metrics at the end; bad logger configs stop in one line."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError
from distillab.run import tracking
from distillab.run.metrics import RunMetrics
from distillab.run.tracking import final_metrics, flat_params, record_final, role_loggers, sweep_of

INSTALL = "pip install mlflow-skinny wandb (or pip install -e '.[track]')"
TENSORBOARD = {
    "_target_": "lightning.pytorch.loggers.TensorBoardLogger",
    "save_dir": "${paths.output_dir}/tb",
    "name": "",
}
CSV = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "${paths.output_dir}/csv", "name": ""}


def config(run_dir: Path, **loggers: dict) -> DictConfig:
    """A run's config as far as the trackers read it: its folders, its loggers and a few keys."""
    return OmegaConf.create(
        {
            "seed": 0,
            "loss": {"alpha": 0.9, "terms": [1, 2], "extra": None},
            "paths": {"log_dir": str(run_dir.parent), "output_dir": str(run_dir)},
            "logger": loggers,
        }
    )


def student_run() -> RunMetrics:
    metrics = RunMetrics("all", teachers=[{"role": "teacher", "params": 100, "test": {"acc": 0.8}}])
    metrics.student = {"params": 10, "test": {"acc": 0.6, "f1": 0.5, "agreement": 0.7}, "robust": {"fgsm@0.1": 0.3}}
    metrics.reference_acc = 0.8
    return metrics


def empty_mlflow_db(template: Path, path: Path) -> str:
    """An empty MLflow store at ``path``: a copy of the session's ``mlflow_template``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, path)
    return f"sqlite:///{path}"


def test_config_is_flattened_to_the_keys_one_overrides(tmp_path):
    params = flat_params(config(tmp_path / "run", tensorboard=TENSORBOARD))
    assert params["loss.alpha"] == 0.9 and params["loss.terms"] == "[1, 2]" and params["loss.extra"] == "null"
    assert params["logger.tensorboard.save_dir"] == f"{tmp_path}/run/tb"  # resolved


def test_final_metrics_hold_test_metrics_retention_and_what_was_measured_after():
    metrics = student_run()
    metrics.language_model = {"student": {"agreement": 0.4, "piqa": {"acc": 0.5, "n": 3}, "answers": ["x"]}}
    final = final_metrics(metrics, "student", metrics.student)
    assert final == {
        "final/acc": 0.6,
        "final/f1": 0.5,
        "final/agreement": 0.7,
        "final/params": 10.0,
        "final/retention": pytest.approx(0.75),
        "final/robust/fgsm_0.1": 0.3,  # a name MLflow takes
        "final/lm/agreement": 0.4,
        "final/lm/piqa/acc": 0.5,
        "final/lm/piqa/n": 3.0,
    }


def test_a_sweep_job_belongs_to_its_sweep_folder(tmp_path):
    job = tmp_path / "multiruns" / "day" / "time" / "0"
    (job / ".hydra").mkdir(parents=True)
    assert sweep_of(job, tmp_path) is None  # no hydra.yaml: not Hydra's job
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RUN\n")
    assert sweep_of(job, tmp_path) is None
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    assert sweep_of(job, tmp_path) == "multiruns/day/time"
    assert sweep_of(job, tmp_path / "elsewhere") == str(job.parent)


@pytest.mark.parametrize(
    "node, key, allowed",
    [
        ({"_target_": "builtins.dict"}, "logger.x._target_", "must be a Lightning logger class"),
        ({"_target_": "no.such.Logger"}, "logger.x._target_", "cannot be imported"),
        ({"save_dir": "."}, "logger.x", "must be a logger config with a _target_"),
        (
            {"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tracking_uri": "file:./mlruns"},
            "logger.x.tracking_uri",
            "MLflow 3 refuses folder stores",
        ),
        (
            {"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tracking_uri": "sqlite:////proc/1/no/mlflow.db"},
            "logger.x.tracking_uri",
            "is not writable",
        ),
    ],
)
def test_a_bad_logger_config_is_one_line(tmp_path, monkeypatch, node, key, allowed):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: True)  # as if mlflow were installed
    with pytest.raises(ConfigError) as err:
        role_loggers(config(tmp_path / "run", x=node), "student")
    assert err.value.key == key and allowed in err.value.allowed


def test_a_tracker_whose_package_is_missing_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the wandb package: pip install"):
        role_loggers(config(tmp_path / "run", wandb={"_target_": "lightning.pytorch.loggers.WandbLogger"}), "student")


def test_every_model_gets_its_tensorboard_hparams_and_csv_with_final_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "run"
    cfg = config(run_dir, tensorboard=TENSORBOARD, csv=CSV)
    trained = role_loggers(cfg, "student")  # the teacher came from the store: no training here
    assert role_loggers(cfg, "student") is trained  # a second training of the same model: the same runs
    trained[0].log_metrics({"train/loss": 1.0}, step=1)
    record_final(cfg, student_run())
    assert not tracking._OPEN  # every tracked run of the run closed
    for role, acc in (("teacher", 0.8), ("student", 0.6)):
        events = EventAccumulator(str(run_dir / "tb" / role))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert {"final/acc", "final/retention"} <= {m.name.tag for m in experiment.metric_infos}
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        assert start.session_start_info.hparams["loss.alpha"].number_value == 0.9
        assert events.Scalars("final/acc")[-1].value == pytest.approx(acc)
        assert "final/acc" in (run_dir / "csv" / role / "metrics.csv").read_text().splitlines()[0]
        assert "loss.alpha: 0.9" in (run_dir / "csv" / role / "hparams.yaml").read_text()


def test_a_continued_run_writes_to_its_own_mlflow_run(tmp_path, mlflow_template):
    from mlflow.tracking import MlflowClient

    uri = empty_mlflow_db(mlflow_template, tmp_path / "mlflow.db")
    mlflow = {"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tracking_uri": uri, "experiment_name": None}
    cfg = config(tmp_path / "run", mlflow=mlflow)
    first = role_loggers(cfg, "student")[0].run_id
    tracking._OPEN.clear()  # the process was killed; the next command continues the run in its folder
    assert role_loggers(cfg, "student")[0].run_id == first
    record_final(cfg, student_run())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("distillab").experiment_id])
    assert sorted(r.data.tags["distillab.role"] for r in runs) == ["student", "teacher"]
    student = next(r for r in runs if r.info.run_id == first)
    assert student.data.tags["mlflow.runName"].endswith(" student") and student.data.params["loss.alpha"] == "0.9"
    assert student.data.metrics["final/retention"] == pytest.approx(0.75)


def test_wandb_online_without_a_login_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason=INSTALL)
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no W&B settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    node = {"_target_": "lightning.pytorch.loggers.WandbLogger", "save_dir": str(tmp_path), "offline": False}
    with pytest.raises(ConfigError, match="W&B could not start online .*wandb login"):
        role_loggers(config(tmp_path / "run", wandb=node), "student")
