"""The students of a run: the one distilled from the frozen teachers (offline, in one training
or through stages), or trained with the teacher (mutual), and the baseline, the same student
trained alone. Each starts from a copy of the plan's ``student_init``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any

from omegaconf import DictConfig

from distillab.models.init_from_teacher import init_from_teacher
from distillab.models.output import TransformerClassifier
from distillab.modules import ClassifierModule, DistillationModule
from distillab.modules.mutual import MutualModule
from distillab.run.fitting import fit_and_test, test_only
from distillab.run.metrics import ModelEntry, TestMetrics
from distillab.run.plan import RunPlan
from distillab.run.stages import Stage, run_stages
from distillab.run.tally import Tally
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import TeacherOutputCache
from distillab.teachers.ensemble import Teachers
from distillab.teachers.sequences import teacher_sequence_data


@dataclass
class Trained:
    entry: ModelEntry  # params and test metrics
    model: TransformerClassifier


def output_cache(cfg: DictConfig) -> TeacherOutputCache:
    """The run's teacher-output cache, as ``cache.*`` configures it."""
    cache = cfg.cache
    return TeacherOutputCache(cache.mode, cfg.paths.teachers_dir, cache.budget_mb, cache.get("shard_rows", 1024))


@dataclass
class Distiller:
    """Distillation modules for the run's students: the plan's teachers frozen, and one teacher
    output cache for the run (the pruned student's recovery reads what the student's run built)."""

    plan: RunPlan
    cache: TeacherOutputCache
    tally: Tally

    @classmethod
    def of(cls, plan: RunPlan, tally: Tally) -> Distiller:
        return cls(plan, output_cache(plan.cfg), tally)

    def module(self, model: TransformerClassifier, stage: Stage | None = None) -> DistillationModule:
        plan, cfg = self.plan, self.plan.cfg
        teachers = Teachers([FrozenTeacher(t) for t in plan.teachers], route_by_domain=cfg.teacher.per_domain)
        return DistillationModule(
            model,
            teachers,
            stage.loss if stage else plan.loss,
            plan.datamodule.num_classes,
            stage.optimizer if stage else plan.optimizer,
            self.cache,
            compile_model=cfg.compile,
            task=plan.task,
            cache_topk=cfg.cache.topk,
            cache_samples=cfg.cache.samples or 0,
            sequences=plan.sequences,
        )

    def fit_stage(self, student: TransformerClassifier, stage: Stage) -> TestMetrics:
        """One stage of staged distillation, training ``student`` in place."""
        cfg, module = self.plan.cfg, self.module(student, stage)
        return fit_and_test(
            module, f"student_{stage.name}", cfg, stage.datamodule, stage.max_epochs, cfg.seed, val=self.tally.val
        )

    def recover(self, model: TransformerClassifier, epochs: int) -> TestMetrics:
        """A pruned student distilled again for ``epochs``."""
        cfg = self.plan.cfg
        return fit_and_test(self.module(model), "pruned", cfg, self.plan.datamodule, epochs, cfg.seed)


@dataclass
class StudentResult(Trained):
    distiller: Distiller  # for the pruned student's recovery
    stages: dict[str, TestMetrics] | None = None  # staged: the test metrics after each stage
    teacher_cache: dict[str, Any] | None = None  # offline: the cache's summary
    peer: ModelEntry | None = None  # mutual: the teacher trained beside the student


def train_student(plan: RunPlan, tally: Tally) -> StudentResult:
    """The student distilled from the frozen teachers (in one training, or stage by stage), or
    trained with the teacher (mode=mutual)."""
    if plan.init_layers is not None:  # the baseline, copied later, starts from these weights too
        init_from_teacher(plan.student_init, plan.teachers[0], plan.init_layers)
    distiller = Distiller.of(plan, tally)
    data = student_data(plan, tally)
    if plan.mutual:
        return train_mutual(plan, distiller, tally)
    cfg, student = plan.cfg, copy.deepcopy(plan.student_init)
    stages = None
    if plan.stages:  # the student passes through each stage; its test metrics are the last stage's
        with tally.timed("student"):
            stages = run_stages(plan.stages, partial(distiller.fit_stage, student))
        test = stages[plan.stages[-1].name]
    else:
        gradual = [plan.compression.gradual] if plan.compression.gradual else []
        with tally.timed("student"):
            test = fit_and_test(
                distiller.module(student),
                "student",
                cfg,
                data,
                cfg.trainer.max_epochs,
                cfg.seed,
                gradual,
                test_best=not gradual,
                val=tally.val,
                throughput=tally.throughput,
            )
    entry: ModelEntry = {"params": student.num_parameters, "test": test}
    return StudentResult(entry, student, distiller, stages, distiller.cache.summary())


def student_data(plan: RunPlan, tally: Tally) -> Any:
    """The student's training data. Sequence-level KD: the teacher's continuations of the
    corpus's training blocks; its val and test splits stay the corpus's, like every other model's."""
    sequences, cfg = plan.sequences, plan.cfg
    if sequences is None or sequences.source != "teacher":
        return plan.datamodule
    with tally.timed("teacher_sequences"):
        return teacher_sequence_data(plan.teachers[0], plan.datamodule, sequences, cfg.seed, cfg.paths.teachers_dir)


def train_mutual(plan: RunPlan, distiller: Distiller, tally: Tally) -> StudentResult:
    """Teacher and student trained together from scratch (deep mutual learning)."""
    cfg, data, num_classes = plan.cfg, plan.datamodule, plan.datamodule.num_classes
    peers = [plan.teachers[0], copy.deepcopy(plan.student_init)]
    with tally.timed("student"):
        module = MutualModule(peers, plan.loss, num_classes, plan.optimizer)
        test = fit_and_test(module, "mutual", cfg, data, cfg.trainer.max_epochs, cfg.seed, val=tally.val)
    teacher_test = test_only(ClassifierModule(peers[0], num_classes), cfg, data)
    peer: ModelEntry = {"role": "teacher", "params": peers[0].num_parameters, "test": teacher_test, "source": "mutual"}
    return StudentResult({"params": peers[1].num_parameters, "test": test}, peers[1], distiller, peer=peer)


def train_baseline(plan: RunPlan, tally: Tally) -> Trained:
    """The student trained alone, on labels: what distillation is measured against."""
    cfg, data = plan.cfg, plan.datamodule
    baseline = copy.deepcopy(plan.student_init)
    module = ClassifierModule(baseline, data.num_classes, plan.optimizer, compile_model=cfg.compile, task=plan.task)
    with tally.timed("baseline"):
        test = fit_and_test(
            module, "baseline", cfg, data, cfg.trainer.max_epochs, cfg.seed, val=tally.val, throughput=tally.throughput
        )
    return Trained({"params": baseline.num_parameters, "test": test}, baseline)


def test_cut(plan: RunPlan, tally: Tally) -> ModelEntry | None:
    """The student cut from the teacher, tested before healing (what pruning alone leaves)."""
    if plan.cut is None:
        return None
    cfg, data, model = plan.cfg, plan.datamodule, plan.student_init
    with tally.timed("cut"):
        test = test_only(ClassifierModule(model, data.num_classes, task=plan.task), cfg, data)
    return {"params": model.num_parameters, "test": test, "cut": plan.cut}
