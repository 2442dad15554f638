"""``run(cfg)``: one distillation run, step by step (docs/ARCHITECTURE.md).

1. plan: config checked, data set up, every model and loss built (plan.py)
2. teachers: from the store, a checkpoint, or trained here (references.py, teachers.py);
   stage=capture: their outputs written to the output cache, and the run ends (capture.py)
3. student: distilled from them (offline, in one training or staged) or with them (mutual)
4. baseline: the same student trained alone (students.py)
5. after training: compression, and each model measured (after_training.py)
6. report: metrics.json, report.md and the console table, on rank 0 (folder.py, report.py)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from distillab.core.distributed import global_rank
from distillab.core.renamed_keys import check_config as check_renamed_keys
from distillab.run.after_training import RunModels, compress_student, measure, objective
from distillab.run.capture import capture_teachers
from distillab.run.checks import check_run_config
from distillab.run.compress import Compressed
from distillab.run.folder import finish, open_run_dir, reuse_finished
from distillab.run.metrics import RunMetrics, git_commit
from distillab.run.plan import plan_run
from distillab.run.references import provide_teachers, text_baseline
from distillab.run.resume import plan_resume
from distillab.run.students import test_cut, train_baseline, train_student
from distillab.run.tally import Tally
from distillab.run.tracking import record_final

log = logging.getLogger(__name__)


def run(cfg: DictConfig, overrides: list[str] | None = None, multirun: bool = False) -> RunMetrics:
    """One run of ``cfg`` (``overrides``: its command line, for the report); its metrics, as written."""
    started = time.perf_counter()
    check_renamed_keys(cfg)  # a user's own config file may still use an old name
    check_run_config(cfg)
    job_dir = Path(cfg.paths.output_dir)  # this command's folder; a continued run works in its own
    rank0 = global_rank() == 0
    resume = plan_resume(cfg, multirun)
    if resume.action == "skip":
        log.info("this config finished in %s: its results are reused (ckpt_path=null runs it again)", resume.run_dir)
        return reuse_finished(resume.run_dir, job_dir, rank0)
    if resume.action == "continue":
        log.info(
            "continuing the interrupted run in %s from its last checkpoints (ckpt_path=null starts afresh)",
            resume.run_dir,
        )
    run_dir = open_run_dir(cfg, resume, rank0)

    plan = plan_run(cfg)  # everything built and checked: a config mistake stops here, before any training
    metrics = RunMetrics(cfg.stage, cfg.mode, cfg.seed, git_commit(), plan.split_sizes())
    tally = Tally.of(metrics)  # each step's seconds, and each training's best val score and throughput
    metrics.teachers = provide_teachers(plan, tally)
    if plan.captures:
        metrics.capture = capture_teachers(plan, tally)
    metrics.bow_baseline = text_baseline(plan, tally)
    metrics.cut = test_cut(plan, tally) if not plan.captures else None
    student = train_student(plan, tally) if plan.wants_student else None
    if student is not None:
        metrics.student, metrics.stages, metrics.teacher_cache = student.entry, student.stages, student.teacher_cache
        metrics.teachers = [student.peer] if student.peer is not None else metrics.teachers
    baseline = train_baseline(plan, tally) if plan.wants_baseline else None
    metrics.baseline = baseline.entry if baseline is not None else None

    compressed = compress_student(plan, student, tally) if student is not None else Compressed()
    metrics.pruned, metrics.onnx = compressed.pruned, compressed.onnx
    measured = measure(plan, RunModels.of(plan, metrics, student, baseline, compressed), tally)
    metrics.reference_acc, metrics.retention, metrics.param_ratio = measured.retention_figures()
    metrics.language_model, metrics.compression = measured.language_model, measured.compression
    metrics.hf_export = measured.hf_export
    metrics.seconds["total"] = round(time.perf_counter() - started, 2)
    metrics.objective = objective(metrics, plan)
    if rank0:
        record_final(cfg, metrics)  # each model's final metrics into its tracked runs

    finish(metrics, run_dir, job_dir, overrides or [], rank0)
    return metrics
