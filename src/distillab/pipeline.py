"""``run(cfg)``: one distillation run, stage by stage (see shared/DESIGN.md).

1. validate and save the config   2. data   3. teacher (store, checkpoint or trained here)
4. student distilled from it      5. baseline (same student, no teacher)   6. report
"""

from __future__ import annotations

import copy
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from distillab.config import ConfigError, build, check_choice, check_int, section
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.report import print_summary, write_report
from distillab.models.output import TransformerClassifier
from distillab.modules import ClassifierModule, DistillationModule, OptimizerConfig
from distillab.teachers import FrozenTeacher, TeacherStore, load_teacher_weights
from distillab.teachers.store import teacher_key

log = logging.getLogger(__name__)

STAGES = ("all", "teacher", "distill", "baseline")
# Trainer keys that change what a teacher learns; the rest (epochs of the student, logging,
# progress bars) must not retrain it.
TEACHER_TRAINER_KEYS = ("precision", "accumulate_grad_batches", "gradient_clip_val", "limit_train_batches")
# Data keys that do not change what a teacher learns.
DATA_KEYS_IGNORED = ("num_workers", "eval_batch_size")


def check_run_config(cfg: DictConfig) -> None:
    """Top-level keys, checked before anything is trained."""
    check_choice("stage", cfg.stage, STAGES)
    check_int("seed", cfg.seed, low=0)
    check_int("trainer.max_epochs", cfg.trainer.max_epochs, low=1)
    check_int("teacher.max_epochs", cfg.teacher.max_epochs, low=1)
    check_choice("baseline", cfg.baseline, (True, False))
    if cfg.stage == "distill" and not cfg.teacher.ckpt_path:
        raise ConfigError("teacher.ckpt_path", None, "stage=distill needs a teacher: a .ckpt, weights.pt or store folder")
    if cfg.teacher.ckpt_path and not Path(cfg.teacher.ckpt_path).expanduser().exists():
        raise ConfigError("teacher.ckpt_path", cfg.teacher.ckpt_path, "no such file or folder")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def fit_and_test(
    module: ClassifierModule, role: str, cfg: DictConfig, datamodule: TensorDataModule, max_epochs: int
) -> dict[str, float]:
    """Train ``module`` with a Trainer built from config; test its best checkpoint."""
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    callbacks = [
        build(node, f"callbacks.{name}", **({"dirpath": str(run_dir / "checkpoints" / role)} if "dirpath" in node else {}))
        for name, node in (cfg.get("callbacks") or {}).items()
    ]
    logger = build(cfg.logger, "logger", version=role) if cfg.get("logger") else False
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = build(cfg.trainer, "trainer", max_epochs=max_epochs, callbacks=callbacks, logger=logger,
                    default_root_dir=str(run_dir))
    log.info("training %s for %d epochs", role, max_epochs)
    trainer.fit(module, datamodule=datamodule)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    return {k.removeprefix("test/"): float(v) for k, v in results.items() if k.startswith("test/") and k != "test/loss"}


def test_only(module: ClassifierModule, cfg: DictConfig, datamodule: TensorDataModule) -> dict[str, float]:
    trainer = build(cfg.trainer, "trainer", logger=False, enable_checkpointing=False, callbacks=[])
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {k.removeprefix("test/"): float(v) for k, v in results.items() if k.startswith("test/") and k != "test/loss"}


def teacher_store_key(cfg: DictConfig) -> str:
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    teacher = {k: v for k, v in plain(cfg.teacher).items() if k != "ckpt_path"}
    data = {k: v for k, v in plain(cfg.data).items() if k not in DATA_KEYS_IGNORED}
    trainer = {k: cfg.trainer.get(k) for k in TEACHER_TRAINER_KEYS}
    return teacher_key({"model": plain(cfg.model.teacher), "data": data, "teacher": teacher,
                        "trainer": trainer, "seed": cfg.seed})


def obtain_teacher(
    cfg: DictConfig, model: TransformerClassifier, datamodule: TensorDataModule
) -> dict[str, Any]:
    """Load the teacher from ``teacher.ckpt_path`` or the store, or train and store it."""
    num_classes = datamodule.num_classes
    if cfg.teacher.ckpt_path:
        load_teacher_weights(model, cfg.teacher.ckpt_path)
        source, key = "checkpoint", None
        test = test_only(ClassifierModule(model, num_classes), cfg, datamodule)
    else:
        store, key = TeacherStore(cfg.paths.teachers_dir), teacher_store_key(cfg)
        entry = store.lookup(key)
        if entry is not None:
            log.info("reusing teacher %s from the store", entry)
            load_teacher_weights(model, entry, key="paths.teachers_dir")
            source, test = "store", store.metrics(key)["test"]
        else:
            with section("teacher.optimizer"):
                optimizer = OptimizerConfig(**cfg.teacher.optimizer)
            module = ClassifierModule(model, num_classes, optimizer)
            test = fit_and_test(module, "teacher", cfg, datamodule, cfg.teacher.max_epochs)
            source = "trained"
            entry = store.save(key, model, OmegaConf.to_container(cfg, resolve=True), {"test": test})
            log.info("stored teacher in %s", entry)
    return {"params": model.num_parameters, "test": test, "source": source, "store_key": key}


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    check_run_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    stage = cfg.stage

    # Build everything cheap first, so that a config mistake stops the run before any training.
    datamodule: TensorDataModule = build(cfg.data, "data")
    datamodule.setup()
    with section("optimizer"):
        optimizer = OptimizerConfig(**cfg.optimizer)
    wants_teacher, wants_student = stage in ("all", "teacher", "distill"), stage in ("all", "distill")
    wants_baseline = stage == "baseline" or (stage == "all" and cfg.baseline)
    loss = build(cfg.loss, "loss") if wants_student else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    teacher_model = build(cfg.model.teacher, "model.teacher", **datamodule.model_kwargs) if wants_teacher else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # The distilled student and the baseline start from the same weights: a fair comparison.
    student_init = (
        build(cfg.model.student, "model.student", **datamodule.model_kwargs) if wants_student or wants_baseline else None
    )

    metrics: dict[str, Any] = {"stage": stage, "seed": cfg.seed, "git_commit": git_commit(), "seconds": {}}
    if wants_teacher:
        t0 = time.perf_counter()
        metrics["teacher"] = obtain_teacher(cfg, teacher_model, datamodule)
        metrics["seconds"]["teacher"] = round(time.perf_counter() - t0, 2)
    if wants_student:
        t0 = time.perf_counter()
        student = copy.deepcopy(student_init)
        module = DistillationModule(student, FrozenTeacher(teacher_model), loss, datamodule.num_classes, optimizer)
        test = fit_and_test(module, "student", cfg, datamodule, cfg.trainer.max_epochs)
        metrics["student"] = {"params": student.num_parameters, "test": test}
        metrics["seconds"]["student"] = round(time.perf_counter() - t0, 2)
    if wants_baseline:
        t0 = time.perf_counter()
        module = ClassifierModule(copy.deepcopy(student_init), datamodule.num_classes, optimizer)
        test = fit_and_test(module, "baseline", cfg, datamodule, cfg.trainer.max_epochs)
        metrics["baseline"] = {"params": student_init.num_parameters, "test": test}
        metrics["seconds"]["baseline"] = round(time.perf_counter() - t0, 2)
    if "teacher" in metrics and "student" in metrics:
        metrics["retention"] = metrics["student"]["test"]["acc"] / metrics["teacher"]["test"]["acc"]
        metrics["param_ratio"] = metrics["student"]["params"] / metrics["teacher"]["params"]
    metrics["seconds"]["total"] = round(time.perf_counter() - started, 2)

    write_report(metrics, run_dir, overrides or [])
    print_summary(metrics, run_dir)
    return metrics


