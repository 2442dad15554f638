"""After training: the student compressed (pruned, quantized, exported), then every model of the
run measured beyond its test metrics: per domain, under attack, and in the compression or
language-model report; last, the final student saved as a Hugging Face folder."""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from distillab.core.config import ConfigError
from distillab.core.distributed import global_rank
from distillab.evaluation.compression import example_inputs
from distillab.evaluation.domains import accuracy_by_domain
from distillab.evaluation.lm_report import language_model_report
from distillab.evaluation.robustness import robustness_report
from distillab.export.hf import export_hf
from distillab.export.hf_tokenizer import label_names_of, tokenizer_of
from distillab.export.model_card import CardFacts, run_command
from distillab.models.output import TransformerClassifier
from distillab.modules import ClassifierModule
from distillab.run.compress import Compressed, compress, compression_report
from distillab.run.fitting import test_only
from distillab.run.lm_evaluation import language_model_scores
from distillab.run.metrics import ModelEntry, RunMetrics, TestMetrics
from distillab.run.plan import RunPlan
from distillab.run.references import Retention, retention
from distillab.run.students import StudentResult, Trained
from distillab.run.tally import Tally

log = logging.getLogger(__name__)


def test_model(plan: RunPlan, model: TransformerClassifier) -> TestMetrics:
    return test_only(ClassifierModule(model, plan.datamodule.num_classes, task=plan.task), plan.cfg, plan.datamodule)


def compress_student(plan: RunPlan, student: StudentResult, tally: Tally) -> Compressed:
    teacher = plan.teachers[0] if plan.teachers else None
    with tally.timed("compression"):
        return compress(
            plan.compression,
            plan.cfg,
            plan.datamodule,
            student.model,
            teacher,
            student.distiller.recover,
            partial(test_model, plan),
        )


@dataclass
class RunModels:
    """Every model of the run beside its metrics entry, in pipeline order."""

    teachers: list[tuple[ModelEntry, TransformerClassifier]]
    trained: dict[str, tuple[ModelEntry, TransformerClassifier]]  # student, baseline, pruned
    compressed: dict[str, Any] = field(default_factory=dict)  # compression's final models: pruned, int8

    @classmethod
    def of(
        cls, plan: RunPlan, metrics: RunMetrics, student: Trained | None, baseline: Trained | None, done: Compressed
    ) -> RunModels:
        """The teachers' entries paired with the plan's models; student, baseline and pruned, those the run has."""
        trained = {"student": student, "baseline": baseline}
        pairs = {role: (t.entry, t.model) for role, t in trained.items() if t is not None}
        if metrics.cut is not None:  # measured beside the healed students (run/cut_student.py)
            pairs = {"cut": (metrics.cut, plan.student_init), **pairs}
        if "pruned" in done.models:
            pairs["pruned"] = (done.pruned, done.models["pruned"])
        return cls(list(zip(metrics.teachers or [], plan.teachers)), pairs, done.models)

    def all(self) -> list[tuple[str, ModelEntry, TransformerClassifier]]:
        """(role, entry, model) of the teachers, then the trained models."""
        return [(e["role"], e, m) for e, m in self.teachers] + [(r, e, m) for r, (e, m) in self.trained.items()]


@dataclass
class Measured:
    retention: Retention | None  # with a teacher and a student
    language_model: dict[str, dict[str, Any]] | None = None  # language models: the LM report
    compression: dict[str, dict[str, Any]] | None = None  # classifiers with a student: the compression report
    hf_export: dict[str, Any] | None = None  # compression.hf: the folder written (HFExport), or why not

    def retention_figures(self) -> tuple[float | None, float | None, float | None]:
        """(reference_acc, retention, param_ratio), None each without a teacher and a student."""
        return astuple(self.retention) if self.retention else (None, None, None)


def measure(plan: RunPlan, models: RunModels, tally: Tally) -> Measured:
    """Each model's ``test_by_domain`` (data with domains) and ``robust`` (robustness.attacks)
    added to its entry; the student's retention; the language-model or the compression report;
    then (``compression.hf``, rank 0) the final student's Hugging Face folder."""
    datamodule = plan.datamodule
    if datamodule.num_domains > 1:
        for _, entry, model in models.all():
            entry["test_by_domain"] = accuracy_by_domain(model, datamodule)
    teachers, student = [e for e, _ in models.teachers], models.trained.get("student")
    measured = Measured(retention(plan, teachers, student[0]) if teachers and student else None)
    if plan.attacks:  # accuracy under attack on the test split, for every model trained or loaded here
        with tally.timed("robustness"):
            robustness_report(plan.cfg, models.all(), plan.attacks, datamodule)
    if plan.task == "language_model":
        with tally.timed("language_model_report"):
            measured.language_model = lm_report(plan, models, tally)
    elif plan.wants_student and plan.cfg.compression.report:
        measured.compression = compression_rows(plan, models, measured.retention_figures()[0])
    if plan.compression.hf and global_rank() == 0:
        with tally.timed("hf_export"):
            measured.hf_export = export_final_student(plan, models, measured)
    return measured


def final_student(models: RunModels) -> str | None:
    """The role of the run's final student: the pruned student, else the student, else (a
    stage=baseline run) the baseline; None without one (stage=teacher)."""
    pruned = models.trained.get("pruned")
    if pruned is not None and pruned[0].get("target") == "student":
        return "pruned"
    return next((role for role in ("student", "baseline") if role in models.trained), None)


def export_final_student(plan: RunPlan, models: RunModels, measured: Measured) -> dict[str, Any] | None:
    """The final student as ``<run>/export/<role>/`` (export/hf.py), its card written from what
    metrics.json will hold. A student no transformers config describes is said in one warning
    line and the run goes on: its checkpoints and ONNX are still there."""
    role = final_student(models)
    if role is None:
        return None
    entry, model = models.trained[role]
    run_dir, data = Path(plan.cfg.paths.output_dir), plan.datamodule
    figures = dict(zip(("reference_acc", "retention", "param_ratio"), measured.retention_figures()))
    metrics = {"teachers": [e for e, _ in models.teachers], role: entry, **figures}
    config = OmegaConf.to_container(plan.cfg, resolve=True)
    card = CardFacts(role, str(run_dir), metrics, config, run_command(run_dir))
    try:
        done = export_hf(
            model, run_dir / "export" / role, tokenizer_of(data), label_names_of(data), card, example_inputs(data, 2)
        )
    except ConfigError as err:
        log.warning("the final student (%s) is not saved as a Hugging Face folder: %s", role, err.allowed)
        return {"role": role, "skipped": err.allowed}
    log.info("saved the final student (%s) as a Hugging Face folder: %s (%s)", role, done.path, done.auto_class)
    # Relative to the run folder, as every other path in metrics.json: the folder may move.
    return {"role": role, **done.as_dict(), "path": str(done.path.relative_to(run_dir))}


def lm_report(plan: RunPlan, models: RunModels, tally: Tally) -> dict[str, dict[str, Any]]:
    """Perplexity-side figures per model: agreement with the teacher, training tokens/s, generations."""
    by_role = {role: model for role, _, model in models.all()}
    rates = {role: entry["items_per_s"] for role, entry in tally.throughput.items() if entry.get("items_per_s")}
    gen = plan.cfg.lm.generations
    report = language_model_report(
        by_role,
        plan.teachers[0] if plan.teachers else None,
        plan.datamodule,
        rates,
        list(gen.get("prompts") or []),
        gen.get("new_tokens", 24),
        gen.get("temperature", 1.0),
        plan.cfg.seed,
    )
    for role, scores in language_model_scores(plan.cfg, by_role, plan.datamodule).items():
        report[role].update(scores)
    return report


def compression_rows(plan: RunPlan, models: RunModels, reference_acc: float | None) -> dict[str, dict[str, Any]]:
    """The compression report's rows: the (first) teacher, the student, the pruned and int8 models."""
    teacher, teacher_model = models.teachers[0]
    report = {teacher["role"]: teacher_model, **{r: m for r, (_, m) in models.trained.items()}, **models.compressed}
    report.pop("baseline", None)
    # A per-domain teacher is measured on its domain.
    own_data = (
        {teacher["role"]: plan.datamodule.restricted_to_domain(teacher["domain"])} if "domain" in teacher else None
    )
    return compression_report(plan.cfg, report, plan.datamodule, reference_acc, own_data)


def objective(metrics: RunMetrics, plan: RunPlan) -> float | None:
    """What a hyper-parameter search optimises: the final model's best validation accuracy."""
    roles = ("mutual", *(f"student_{s.name}" for s in plan.stages[-1:]), "student", "baseline", "teacher")
    final = next((role for role in roles if role in metrics.val), None)
    return metrics.val.get(final)
