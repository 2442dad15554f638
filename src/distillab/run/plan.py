"""The run's plan: everything built and checked before anything trains, so that a config
mistake stops the run with one error naming its key, not after an hour of training.

Models are built in a fixed order, each right after ``L.seed_everything`` with its own seed
(the teachers', then the run's for the student), so that a run's initial weights do not depend
on which other sections its config has.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from omegaconf import DictConfig

from distillab.core.config import ConfigError, build, section
from distillab.data.abilities import LabelledTexts, TakesTokenizer
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.models.init_from_teacher import check_init_from_teacher
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import shared_tokenizer
from distillab.modules import OptimizerConfig
from distillab.run.checks import check_cache, check_data_module, check_language_model, check_loss
from distillab.run.compress import CompressionPlan, plan_compression
from distillab.run.cut_student import cut_student, is_cut
from distillab.run.stages import Stage, plan_stages
from distillab.run.teachers import TeacherSpec, check_teacher_augmentation, teacher_attack, teacher_specs
from distillab.teachers.sequences import SequenceSource


@dataclass
class RunPlan:
    cfg: DictConfig
    datamodule: TensorDataModule  # set up: its files are read
    optimizer: OptimizerConfig  # the student's and the baseline's
    specs: list[TeacherSpec]  # empty for stage=baseline
    teachers: list[TransformerClassifier]  # built, one per spec; weights filled when provided
    student_init: TransformerClassifier | None  # what student and baseline start from (None: stage=teacher)
    loss: Any  # a CompositeLoss (offline) or MutualLoss (mutual); None without a student
    compression: CompressionPlan
    attacks: list[Any]  # robustness.attacks, built
    sequences: SequenceSource | None  # language models: where the student's sequences come from
    stages: list[Stage] = field(default_factory=list)  # staged distillation (empty: one training)
    init_layers: Any = None  # student_init.from_teacher: the teacher layers the student starts from
    cut: dict[str, Any] | None = None  # model.student.cut: what the student kept of its teacher (run/cut_student.py)

    @property
    def wants_student(self) -> bool:
        return self.cfg.stage in ("all", "distill")

    @property
    def captures(self) -> bool:
        """stage=capture: the teachers' outputs written ahead of training, no model trained after them."""
        return self.cfg.stage == "capture"

    @property
    def wants_baseline(self) -> bool:
        return self.cfg.stage == "baseline" or (self.cfg.stage == "all" and bool(self.cfg.baseline))

    @property
    def mutual(self) -> bool:
        return self.cfg.mode == "mutual"

    @property
    def task(self) -> str:
        return self.datamodule.task

    def split_sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.datamodule.splits.items()}


def bind_pretrained_tokenizer(cfg: DictConfig, datamodule: TensorDataModule) -> None:
    """Text data tokenized by a pretrained model's own tokenizer, when its folder has one."""
    listed = cfg.model.get("teachers") or [cfg.model.teacher]
    nodes = {
        **{
            (f"model.teachers[{i}]" if cfg.model.get("teachers") else "model.teacher"): node
            for i, node in enumerate(listed)
        },
        "model.student": cfg.model.student,
    }
    tokenizer = shared_tokenizer(
        {key: node.get("pretrained") for key, node in nodes.items()},
        {key: node.get("converted_dir") for key, node in nodes.items()},
    )
    if tokenizer is not None and isinstance(datamodule, TakesTokenizer):
        datamodule.use_tokenizer(tokenizer)


def build_model(node: DictConfig, key: str, seed: int, datamodule: TensorDataModule) -> TransformerClassifier:
    L.seed_everything(seed, workers=True, verbose=False)
    return build(node, key, **datamodule.model_kwargs)


def plan_run(cfg: DictConfig) -> RunPlan:
    """Data set up, models, loss, stages, compression and attacks built, and every check that
    needs several of them at once, in this order."""
    datamodule: TensorDataModule = build(cfg.data, "data")
    check_teacher_augmentation(cfg, datamodule)
    check_data_module(cfg, datamodule)  # before setup: a too long max_length aborts the tokenizer
    bind_pretrained_tokenizer(cfg, datamodule)
    with section("data"):  # files are read here: their errors name data.<key>
        datamodule.setup()
    with section("optimizer"):
        optimizer = OptimizerConfig(**cfg.optimizer)
    if cfg.stage != "baseline":
        with section("teacher.optimizer"):
            OptimizerConfig(**cfg.teacher.optimizer)
    check_trainer_builds(cfg)
    # stage=capture asks for what the distillation run will read, so it builds its student and loss too
    wants_student = cfg.stage in ("all", "distill", "capture")
    specs = teacher_specs(cfg, datamodule.num_domains) if cfg.stage != "baseline" else []
    teachers = [build_model(s.node, s.key, s.seed, datamodule) for s in specs]
    student, cut = None, None
    if cfg.stage != "teacher" and is_cut(cfg.model.student):
        if not teachers:
            raise ConfigError("model.student.cut", "{...}", "cuts the student from its teacher: use stage=all")
        student, cut = cut_student(cfg.model.student, teachers[0], specs[0].node, datamodule)
    elif cfg.stage != "teacher":
        student = build_model(cfg.model.student, "model.student", cfg.seed, datamodule)
    loss = build(cfg.loss, "loss") if wants_student else None
    compression = plan_compression(cfg)
    teacher_attack(cfg)  # checked now; built again where the teacher trains
    attacks = [
        build(node, f"robustness.attacks[{i}]") for i, node in enumerate(cfg.get("robustness", {}).get("attacks") or [])
    ]
    if cfg.get("bow_baseline") and not isinstance(datamodule, LabelledTexts):
        raise ConfigError("bow_baseline", True, "needs text data (data=sst2, agnews, ...)")
    sequences = check_language_model(cfg, datamodule, teachers, student, loss)
    plan = RunPlan(cfg, datamodule, optimizer, specs, teachers, student, loss, compression, attacks, sequences, cut=cut)
    if wants_student:
        check_student(plan)
    return plan


def check_trainer_builds(cfg: DictConfig) -> None:
    """The Trainer and callbacks every model trains with, built once and thrown away, so that a
    value Lightning refuses stops the run here rather than when a training starts."""
    quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its "GPU available" lines come when the real Trainer is built
    try:
        with tempfile.TemporaryDirectory() as scratch:
            callbacks = [
                lightning_built(node, f"callbacks.{name}", **({"dirpath": scratch} if "dirpath" in node else {}))
                for name, node in (cfg.get("callbacks") or {}).items()
            ]
            lightning_built(
                cfg.trainer, "trainer", callbacks=callbacks, logger=False, default_root_dir=scratch, max_epochs=1
            )
    finally:
        quiet.setLevel(level)


def lightning_built(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """:func:`build`, with Lightning's own refusals (MisconfigurationException, ValueError) as
    config errors naming ``key``."""
    try:
        return build(node, key, **kwargs)
    except ConfigError:
        raise
    except Exception as err:
        cause = err.__cause__ or err
        what = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(key, "{...}", f"refused by Lightning: {what}") from None


def check_student(plan: RunPlan) -> None:
    """The student's loss, stages, cache and initialisation from the teacher, checked against
    the models and data (fills ``plan.stages`` and ``plan.init_layers``)."""
    cfg, student, teachers = plan.cfg, plan.student_init, plan.teachers
    check_loss(cfg, plan.loss, student, teachers, plan.datamodule)
    plan.stages = plan_stages(cfg, plan.datamodule, student.shape, [t.shape for t in teachers])
    if plan.stages and plan.compression.gradual:
        raise ConfigError(
            "pruning",
            cfg.pruning.get("_target_"),
            "gradual pruning runs within one training, "
            "not across stages: prune after training (pruning=magnitude, heads, ...)",
        )
    check_cache(cfg, plan.datamodule)
    if cfg.student_init.from_teacher:
        with section("student_init"):
            plan.init_layers = check_init_from_teacher(
                student, teachers[0], cfg.student_init.layers, cfg.student_init.k
            )
