"""Is this run's config coherent? Checks that need several sections at once (stage, mode,
loss, cache), run before anything is trained; each error names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distillab.core.config import ConfigError, check_choice, check_int, check_number, section
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.precision import precision_dtype
from distillab.losses import CompositeLoss, MutualLoss
from distillab.losses.token import token_kinds, token_temperature
from distillab.models.causal_lm import check_same_vocabulary
from distillab.models.output import TransformerClassifier
from distillab.run.resume import MODES as RESUME_MODES
from distillab.teachers.cache import MODES as CACHE_MODES
from distillab.teachers.sequences import SequenceSource

STAGES = ("all", "teacher", "distill", "baseline")
MODES = ("offline", "mutual")


def check_run_config(cfg: DictConfig) -> None:
    """Top-level keys, checked before anything is trained."""
    check_choice("stage", cfg.stage, STAGES)
    check_choice("mode", cfg.mode, MODES)
    check_int("seed", cfg.seed, low=0)
    check_int("trainer.max_epochs", cfg.trainer.max_epochs, low=1)
    check_int("teacher.max_epochs", cfg.teacher.max_epochs, low=0)
    if cfg.teacher.max_epochs == 0 and not all(node.get("pretrained") for node in teacher_nodes(cfg)):
        raise ConfigError(
            "teacher.max_epochs", 0, "takes a teacher as it is: only a pretrained one (model.teacher.pretrained)"
        )
    precision_dtype(cfg.teacher.get("precision", "fp32"))
    check_choice("baseline", cfg.baseline, (True, False))
    check_choice("teacher.per_domain", cfg.teacher.per_domain, (True, False))
    check_choice("student_init.from_teacher", cfg.student_init.from_teacher, (True, False))
    check_choice("cache.mode", cfg.cache.mode, CACHE_MODES)
    check_number("cache.budget_mb", cfg.cache.budget_mb, low=0)
    check_number("teacher.adversarial_weight", cfg.teacher.get("adversarial_weight", 1.0), low=0, high=1)
    check_choice("compile", cfg.compile, (True, False))
    check_choice("bow_baseline", cfg.get("bow_baseline", False), (True, False))
    check_choice("compression.report", cfg.compression.report, (True, False))
    if cfg.get("ckpt_path", "auto") not in RESUME_MODES and not isinstance(cfg.ckpt_path, str):
        raise ConfigError("ckpt_path", cfg.ckpt_path, "must be auto, last, null or a run folder")
    if cfg.mode == "mutual" and cfg.stage != "all":
        raise ConfigError("mode", cfg.mode, "trains teacher and student together from scratch: use stage=all")
    if cfg.stage == "distill" and not cfg.teacher.ckpt_path:
        raise ConfigError(
            "teacher.ckpt_path", None, "stage=distill needs a teacher: a .ckpt, weights.pt or store folder"
        )
    ckpts = cfg.teacher.ckpt_path
    for path in [ckpts] if isinstance(ckpts, str) else (ckpts or []):
        if not Path(path).expanduser().exists():
            raise ConfigError("teacher.ckpt_path", path, "no such file or folder")


def teacher_nodes(cfg: DictConfig) -> list[DictConfig]:
    """The model config of each teacher: ``model.teachers``, else ``model.teacher``."""
    return list(cfg.model.get("teachers") or [cfg.model.teacher])


def check_loss(
    cfg: DictConfig,
    loss: Any,
    student: TransformerClassifier,
    teachers: list[TransformerClassifier],
    datamodule: TensorDataModule,
) -> None:
    """The loss must suit the mode; terms that map layers see both models before training."""
    if cfg.mode == "mutual":
        if not isinstance(loss, MutualLoss):
            raise ConfigError("loss", cfg.loss.get("_target_"), "mode=mutual needs a mutual loss (loss=dml)")
        return
    if not isinstance(loss, CompositeLoss):
        raise ConfigError(
            "loss", cfg.loss.get("_target_"), "mode=offline needs a distillation loss (loss=kd, fitnet, ...)"
        )
    with section("loss"):
        loss.setup(student.shape, [t.shape for t in teachers])
    few_labels = datamodule.labelled_fraction < 1 or datamodule.has_label is not None
    for name, term in loss.terms.items():
        if few_labels and term.reads_labels:
            raise ConfigError(
                f"loss.terms.{name}",
                type(term).__name__,
                "reads every sample's label; with "
                "data.labelled_fraction < 1 or data.unlabelled only the ce term may use labels",
            )


def check_cache(cfg: DictConfig, datamodule: TensorDataModule) -> None:
    """An explicit cache mode with augmented training inputs would serve stale outputs."""
    if cfg.mode == "offline" and cfg.cache.mode in ("memory", "disk") and datamodule.inputs_vary("train"):
        raise ConfigError(
            "cache.mode",
            cfg.cache.mode,
            "the training inputs are augmented (new every epoch), so "
            "the teacher's outputs on them cannot be cached: use auto (live teacher on training "
            "batches, cached on val/test) or off",
        )


def check_language_model(
    cfg: DictConfig,
    datamodule: TensorDataModule,
    teachers: list[TransformerClassifier],
    student: TransformerClassifier | None,
    loss: Any,
) -> SequenceSource | None:
    """Language-model runs (data with ``task=language_model``): one vocabulary for every model,
    the top-k cache and the sequence source coherent with the loss. Returns the sequence
    source (None for classifiers, where ``cache.topk`` and ``lm.sequences`` must be unset)."""
    topk = cfg.cache.topk
    samples = cfg.cache.samples or 0
    source = cfg.lm.sequences.source
    if datamodule.task != "language_model":
        if topk is not None:
            raise ConfigError(
                "cache.topk",
                topk,
                "keeps a language model's top-k next tokens; this data is classification (set it to null)",
            )
        if samples:
            raise ConfigError(
                "cache.samples",
                samples,
                "fills slots of a language model's top-k cache; this data is classification (set it to 0)",
            )
        if source != "corpus":
            raise ConfigError("lm.sequences.source", source, "applies to language models (data=lm_corpus); use corpus")
        return None
    if cfg.mode != "offline":
        raise ConfigError("mode", cfg.mode, "language models are distilled offline (mode=offline)")
    for key in ("attacks",):
        if cfg.get("robustness", {}).get(key):
            raise ConfigError(f"robustness.{key}", "[...]", "attacks classifiers; unset it for language models")
    if cfg.get("stages"):
        raise ConfigError(
            "stages", "[...]", "staged distillation is for classifiers; language models train in one stage"
        )
    with section("lm.sequences"):
        sequences = SequenceSource(**cfg.lm.sequences)
        sequences.check_block(datamodule.block_size)
    if student is not None:
        for teacher in teachers:
            check_same_vocabulary(teacher, student, "model.student")
    if topk is not None:
        check_int("cache.topk", topk, low=1, high=datamodule.num_classes)
        if loss is not None and token_temperature(loss) is None:
            raise ConfigError(
                "cache.topk", topk, "is read by token-level terms (loss=token_kd, gkd, ...); this loss has none"
            )
    # With dense logits (cache.topk=null) there are no slots to fill: cache.samples is moot, so
    # that a sweep over cache.topk=32,null keeps one setting.
    if samples and topk is not None:
        check_int("cache.samples", samples, low=0, high=topk - 1)
        kinds = token_kinds(loss) if loss is not None else set()
        if kinds - {"forward_kl"}:
            raise ConfigError(
                "cache.samples",
                samples,
                "gives a target that equals the teacher only in "
                f"expectation, which forward_kl reads without bias; this loss has {sorted(kinds)} "
                "(set cache.samples=0: top tokens and the rest as one bucket)",
            )
    if sequences.source != "corpus" and len(teachers) > 1:
        raise ConfigError(
            "lm.sequences.source", sequences.source, f"generates with one teacher; this run has {len(teachers)}"
        )
    return sequences
