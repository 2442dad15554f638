"""Trackers: every model of a run (teacher, student, baseline, pruned, ...) as its own tracked run
in each logger of ``cfg.logger`` (conf/logger/: tensorboard, csv, mlflow, wandb; many = the first
three; any set as ``'logger=[tensorboard,wandb]'``).

A tracked run is named ``<run key[:8]> <role>`` (the run key is the hash of the resolved config,
run/resume.py), so the students of a sweep's jobs are told apart; it holds the flattened resolved
config as parameters, what Lightning logs while the model trains and tests, and at the end of the
run its final metrics (``final/acc``, ``final/f1``, ``final/retention``, ``final/agreement``,
``final/ppl``, ...). A sweep's jobs are grouped: one MLflow experiment, one W&B group, named after
the sweep's folder. TensorBoard gets the config with the final metrics as its hparams summary
(``log_hyperparams(params, metrics)``), so that its HParams tab compares the runs of a sweep.

The loggers of a model are opened at its first training (:func:`role_loggers`, from fitting.py)
and kept open until the run has measured everything (:func:`record_final`, once per run): W&B
holds one live run per model, and retention and the language-model figures are known only then.
A model that did not train here (a teacher from the store, the cut student) gets its tracked run
at the end. A run continued in its own folder writes to the same TensorBoard and CSV folders, the
same MLflow run (found by its tags) and the same W&B run id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.utils import get_object
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, build, check_writable
from distillab.core.distributed import global_rank
from distillab.run.metrics import ModelEntry, RunMetrics
from distillab.run.resume import run_key

Param = str | int | float | bool
Nodes = dict[str, tuple[type[Logger], DictConfig]]  # logger name in cfg.logger -> its class, its config
SINGLE_RUN_EXPERIMENT = "distillab"  # MLflow's experiment for runs outside a sweep
# What MLflow accepts in a metric or parameter name; anything else becomes "_" (for every tracker alike).
UNSAFE_NAME = re.compile(r"[^\w./\- ]")
PACKAGES = {MLFlowLogger: "mlflow", WandbLogger: "wandb"}  # the import that a logger class needs
INSTALL = "pip install mlflow-skinny wandb (or pip install -e '.[track]')"

# (run folder, role) -> the loggers of a model that trained in this process, until record_final.
_OPEN: dict[tuple[Path, str], list[Logger]] = {}


@dataclass(frozen=True)
class TrackedRun:
    """One model of one run, as the trackers know it."""

    run_dir: Path
    key: str  # the run key: the hash of the resolved config (run/resume.py)
    role: str
    sweep: str | None  # a sweep job's: the sweep's folder (relative to paths.log_dir when under it)

    @property
    def name(self) -> str:
        return f"{self.key[:8]} {self.role}"

    @property
    def wandb_id(self) -> str:
        """Unique per run folder and role (two runs of one config differ), the same when the run continues."""
        folder = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:8]
        return f"{self.key[:8]}-{folder}-{self.role}"

    def tags(self) -> dict[str, str]:
        return {
            "distillab.run_key": self.key,
            "distillab.role": self.role,
            "distillab.run_dir": str(self.run_dir),
            "distillab.sweep": self.sweep or "",
        }


def sweep_of(run_dir: Path, log_dir: Path) -> str | None:
    """The sweep a run folder belongs to: its parent, when Hydra ran it as a multirun's job
    (``.hydra/hydra.yaml`` says ``mode: MULTIRUN``). Read from the folder, so that a job
    continued by a later command stays in its own sweep."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    hydra = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra") or {}
    if str(hydra.get("mode")) not in ("MULTIRUN", "RunMode.MULTIRUN"):
        return None
    sweep = run_dir.parent
    return str(sweep.relative_to(log_dir)) if sweep.is_relative_to(log_dir) else str(sweep)


def tracked_run(cfg: DictConfig, role: str) -> TrackedRun:
    run_dir = Path(cfg.paths.output_dir)
    return TrackedRun(run_dir, run_key(cfg), role, sweep_of(run_dir, Path(cfg.paths.log_dir)))


def flat_params(cfg: DictConfig) -> dict[str, Param]:
    """The resolved config as ``dotted.key: value`` (the keys one overrides on the command line):
    null as ``null``, lists as JSON, names made safe for MLflow."""
    flat: dict[str, Param] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, (list, tuple, Mapping)):
            flat[UNSAFE_NAME.sub("_", prefix[:-1])] = json.dumps(node, default=str)
        else:
            flat[UNSAFE_NAME.sub("_", prefix[:-1])] = "null" if node is None else node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def _numbers(prefix: str, value: Any) -> dict[str, float]:
    """The finite numbers inside ``value`` (nested mappings flattened with ``/``); the rest left out."""
    if isinstance(value, Mapping):
        return {k: v for key, inner in value.items() for k, v in _numbers(f"{prefix}/{key}", inner).items()}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return {}
    return {UNSAFE_NAME.sub("_", prefix): float(value)}


def final_metrics(metrics: RunMetrics, role: str, entry: ModelEntry) -> dict[str, float]:
    """One model's final figures, as in metrics.json: its test metrics (acc, f1, precision, recall,
    agreement; ppl for a language model), its parameter count, its retention (acc / the reference
    teacher's acc, as in report.md) and what the run measured beyond the test split: accuracy per
    domain and under attack, its compression row, its language-model report."""
    test = entry.get("test", {})
    final = {**_numbers("final", test), **_numbers("final/params", entry.get("params"))}
    if "acc" in test and metrics.reference_acc:
        final["final/retention"] = test["acc"] / metrics.reference_acc
    final |= _numbers("final/domain", entry.get("test_by_domain", {}))
    final |= _numbers("final/robust", entry.get("robust", {}))
    final |= _numbers("final/compression", (metrics.compression or {}).get(role, {}))
    final |= _numbers("final/lm", (metrics.language_model or {}).get(role, {}))
    return final


# Config checks.


def _mlflow_store(key: str, uri: Any) -> None:
    """A local store must be one MLflow 3 opens and this run can write; a server's address is the user's."""
    if not isinstance(uri, str) or not uri:
        raise ConfigError(key, uri, "must be sqlite:///<path>/mlflow.db (the default) or a tracking server's address")
    scheme = uri.split(":", 1)[0] if re.match(r"^[a-z][a-z0-9+.-]+:", uri) else ""
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise ConfigError(
                key,
                uri,
                "MLflow 3 refuses folder stores (set MLFLOW_ALLOW_FILE_STORE=true to use one anyway): "
                "use sqlite:///<path>/mlflow.db",
            )
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
    elif scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
    else:  # a server (http, https, databricks) or a database the user runs
        return
    try:
        check_writable(key, folder)
    except ConfigError as err:
        raise ConfigError(key, uri, err.allowed) from None


def logger_nodes(cfg: DictConfig) -> Nodes:
    """The loggers ``cfg.logger`` names, each with its class, checked: a Lightning logger whose
    package is installed; MLflow's store one this run can write. Empty for ``logger=none``."""
    nodes = cfg.get("logger") or {}
    found = {}
    for name, node in nodes.items():
        key = f"logger.{name}"
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(key, node, "must be a logger config with a _target_ (see conf/logger/)")
        try:
            cls = get_object(node._target_)
        except Exception:  # noqa: BLE001 - any failure to import is the same mistake for the user
            raise ConfigError(f"{key}._target_", node._target_, "cannot be imported (check the spelling)") from None
        if not (isinstance(cls, type) and issubclass(cls, Logger)):
            raise ConfigError(f"{key}._target_", node._target_, "must be a Lightning logger class")
        package = next((p for c, p in PACKAGES.items() if issubclass(cls, c)), None)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError("logger", name, f"needs the {package} package: {INSTALL}")
        if issubclass(cls, MLFlowLogger):
            _mlflow_store(f"{key}.tracking_uri", node.get("tracking_uri"))
        found[name] = (cls, node)
    return found


# Opening and closing a model's tracked runs.


def _mlflow_run_id(node: DictConfig, experiment: str, run: TrackedRun) -> str | None:
    """The MLflow run an earlier process opened for this run folder and role (a continued run)."""
    if "'" in str(run.run_dir) or global_rank() != 0:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(node.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    tags = run.tags()
    query = " and ".join(f"tags.`{k}` = '{tags[k]}'" for k in ("distillab.run_dir", "distillab.role"))
    runs = client.search_runs([found.experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def _role_kwargs(cls: type[Logger], node: DictConfig, run: TrackedRun) -> dict[str, Any]:
    """What makes a logger this model's own tracked run, by logger class. A logger class not
    listed here is built as configured."""
    if issubclass(cls, TensorBoardLogger):
        # The HParams tab's metrics are the final ones (record_final), not a placeholder hp_metric.
        return {"version": run.role, "default_hp_metric": False}
    if issubclass(cls, CSVLogger):
        return {"version": run.role}
    if issubclass(cls, MLFlowLogger):
        experiment = node.get("experiment_name") or run.sweep or SINGLE_RUN_EXPERIMENT
        user_tags = OmegaConf.to_container(node.tags) if node.get("tags") else {}
        return {
            "experiment_name": experiment,
            "run_name": run.name,
            "tags": {**user_tags, **run.tags()},
            "run_id": _mlflow_run_id(node, experiment, run),
        }
    if issubclass(cls, WandbLogger):
        # create_new: one live W&B run per model (the default would hand every model the first one).
        return {
            "name": run.name,
            "id": run.wandb_id,
            "group": node.get("group") or run.sweep,
            "job_type": run.role,
            "reinit": "create_new",
        }
    return {}


def _start(name: str, node: DictConfig, logger: Logger, params: dict[str, Param]) -> None:
    """Log the config, which opens the tracked run; W&B online without a login stops here, in one line."""
    if not isinstance(logger, WandbLogger) or node.get("offline", False):
        logger.log_hyperparams(params)
        return
    import wandb

    try:
        logger.log_hyperparams(params)
    except wandb.Error as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"logger.{name}.offline",
            False,
            f"W&B could not start online ({reason}): run `wandb login` or set WANDB_API_KEY, or keep offline=true",
        ) from None


def _open(nodes: Nodes, run: TrackedRun, params: dict[str, Param]) -> list[Logger]:
    loggers = []
    for name, (cls, node) in nodes.items():
        logger = build(node, f"logger.{name}", **_role_kwargs(cls, node, run))
        _start(name, node, logger, params)
        loggers.append(logger)
    return loggers


def role_loggers(cfg: DictConfig, role: str) -> list[Logger]:
    """The loggers of ``cfg.logger`` for the model ``role`` of this run, for its Trainer: opened
    (the config logged as parameters) at its first training, the same ones at the next (a pruned
    student is recovered once per pruning step). Empty for ``logger=none``."""
    nodes = logger_nodes(cfg)
    if not nodes:
        return []
    run = tracked_run(cfg, role)
    if (run.run_dir, role) not in _OPEN:
        _OPEN[(run.run_dir, role)] = _open(nodes, run, flat_params(cfg))
    return _OPEN[(run.run_dir, role)]


def _close(logger: Logger) -> None:
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()


def record_final(cfg: DictConfig, metrics: RunMetrics) -> None:
    """Each model's final metrics (:func:`final_metrics`) into its tracked runs, opened now for a
    model that did not train here; then every tracked run of this run folder is closed, those of
    trainings that are no model of metrics.json too (a staged student's stages, mutual learning's pair).
    TensorBoard gets them as its hparams summary, with the config, for the HParams tab."""
    run_dir = Path(cfg.paths.output_dir)
    nodes = logger_nodes(cfg)
    if nodes and global_rank() == 0:
        params = flat_params(cfg)
        for role, entry in metrics.entries():
            final = final_metrics(metrics, role, entry)
            opened = _OPEN.get((run_dir, role))
            loggers = opened if opened is not None else _open(nodes, tracked_run(cfg, role), params)
            _OPEN[(run_dir, role)] = loggers
            for logger in loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.log_hyperparams(params, final)
                else:
                    logger.log_metrics(final)
    for key in [key for key in _OPEN if key[0] == run_dir]:
        for logger in _OPEN.pop(key):
            _close(logger)
