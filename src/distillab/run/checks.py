"""Is this run's config coherent? Checks that need several sections at once (stage, mode,
loss, cache), run before anything is trained; each error names its key."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, ListConfig, OmegaConf

from distillab.core.config import ConfigError, check_choice, check_int, check_number, check_seed, section
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.data.text.tokenized import TokenizedTextDataModule
from distillab.evaluation.entity_metrics import token_classification_metrics
from distillab.evaluation.lm_metrics import language_model_metrics
from distillab.evaluation.metrics import classification_metrics
from distillab.evaluation.precision import precision_dtype
from distillab.losses import CompositeLoss, MutualLoss
from distillab.losses.token import token_kinds, token_temperature
from distillab.models.causal_lm import check_same_vocabulary
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import pretrained_positions
from distillab.run.resume import MODES as RESUME_MODES
from distillab.teachers.cache import MODES as CACHE_MODES
from distillab.teachers.sequences import SequenceSource

STAGES = ("all", "teacher", "distill", "baseline", "capture")
MODES = ("offline", "mutual")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")  # the names Lightning's Trainer takes
DATA_SEEDS = ("split_seed", "label_seed", "domain_seed")
# Sections that hold a list of buildable nodes, one per teacher or attack.
LISTED_SECTIONS = ("model.teachers", "robustness.attacks")
# The positions of a text model built here from shape keys (BERT's max_position_embeddings);
# a pretrained one reads as many as its config.json says.
BUILT_POSITIONS = 512
LOWER_IS_BETTER = ("val/loss", "val/ppl")  # every other logged metric is better when higher


def check_run_config(cfg: DictConfig) -> None:
    """Top-level keys, checked before anything is trained."""
    check_choice("stage", cfg.stage, STAGES)
    check_choice("mode", cfg.mode, MODES)
    for key in LISTED_SECTIONS:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, ListConfig):
            raise ConfigError(key, value, "must be a list of config sections (or null)")
        for i, item in enumerate(value or []):
            if not isinstance(item, DictConfig):
                raise ConfigError(f"{key}[{i}]", item, "must be a config section with a _target_")
    check_seeds(cfg)
    check_int("trainer.max_epochs", cfg.trainer.max_epochs, low=1)
    check_trainer(cfg.trainer)
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
    check_int("cache.shard_rows", cfg.cache.get("shard_rows", 1024), low=1)
    if cfg.stage == "capture":
        check_capture(cfg)
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
    check_teacher_paths(cfg)


def check_capture(cfg: DictConfig) -> None:
    """stage=capture writes the cache's disk entries that a later offline run reads."""
    if cfg.cache.mode not in ("auto", "disk"):
        raise ConfigError(
            "cache.mode", cfg.cache.mode, "stage=capture writes the teacher's outputs to disk: use auto or disk"
        )
    splits = cfg.cache.get("capture_splits")
    if not isinstance(splits, ListConfig) or not splits or not all(s in ("train", "val", "test") for s in splits):
        raise ConfigError("cache.capture_splits", splits, "must be a non-empty list of train, val, test")
    if cfg.lm.sequences.get("source") == "teacher":
        raise ConfigError(
            "stage",
            "capture",
            "sequence-level KD trains on the teacher's own continuations, not the data's splits: "
            "capture is for token-level targets (lm.sequences.source=corpus)",
        )


def check_seeds(cfg: DictConfig) -> None:
    """Every seed numpy will be given, in [0, 2**32): the run's, the teachers' (``seed + i`` for
    the i-th of model.teachers) and the data's."""
    teachers = len(cfg.model.get("teachers") or [None])
    own_teacher_seed = cfg.teacher.get("seed") is not None
    check_seed("seed", cfg.seed, count=1 if own_teacher_seed else teachers)
    if own_teacher_seed:
        check_seed("teacher.seed", cfg.teacher.seed, count=teachers)
    for key in DATA_SEEDS:
        if cfg.data.get(key) is not None:
            check_seed(f"data.{key}", cfg.data[key])


def check_trainer(trainer: DictConfig) -> None:
    """Trainer values Lightning would reject only once a training starts (after the teacher's,
    for the student's): gradient accumulation and the accelerator."""
    check_int("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), low=1)
    accelerator = trainer.get("accelerator", "auto")
    if isinstance(accelerator, DictConfig):  # an Accelerator object built from its _target_
        return
    check_choice("trainer.accelerator", accelerator, ACCELERATORS)
    if accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        raise ConfigError(
            "trainer.accelerator", accelerator, "needs torch_xla, which is not installed: pip install torch_xla"
        )
    if accelerator in ("gpu", "cuda") and not CUDAAccelerator.is_available() and not MPSAccelerator.is_available():
        raise ConfigError("trainer.accelerator", accelerator, "no GPU is visible to torch here: use auto or cpu")
    if accelerator == "mps" and not MPSAccelerator.is_available():
        raise ConfigError("trainer.accelerator", accelerator, "needs Apple's MPS, not available here: use auto or cpu")


def check_teacher_paths(cfg: DictConfig) -> None:
    """``teacher.ckpt_path``: one path, or a list of one path per teacher (one for model.teacher,
    as many as model.teachers), each of which exists."""
    ckpts = cfg.teacher.ckpt_path
    paths = list(ckpts) if isinstance(ckpts, ListConfig) else [] if ckpts is None else [ckpts]
    shown = OmegaConf.to_container(ckpts) if isinstance(ckpts, ListConfig) else ckpts
    allowed = "must be a .ckpt, weights.pt or store folder, or a list of them with model.teachers"
    if not all(isinstance(path, str) and path for path in paths):
        raise ConfigError("teacher.ckpt_path", shown, allowed)
    if isinstance(ckpts, ListConfig) and not cfg.model.get("teachers") and len(paths) > 1:
        raise ConfigError(
            "teacher.ckpt_path",
            shown,
            f"gives {len(paths)} paths for one model.teacher: give one (a list of several goes with model.teachers)",
        )
    for path in paths:
        if not Path(path).expanduser().exists():
            raise ConfigError("teacher.ckpt_path", path, "no such file or folder")


def check_data_module(cfg: DictConfig, datamodule: TensorDataModule) -> None:
    """What the data module, built but not yet read, must agree with: the metrics the callbacks
    monitor (those its task logs), text that fits every model's positions, and for token
    classification, the run's parts that can label tokens."""
    check_monitors(cfg, datamodule.task)
    if isinstance(datamodule, TokenizedTextDataModule):
        check_max_length(cfg, datamodule.max_length)
    if datamodule.task == "token_classification":
        check_token_classification(cfg)


def check_token_classification(cfg: DictConfig) -> None:
    """A label per token (data=wnut17): what assumes one label per input is refused, one line
    each, before anything is read or trained."""
    if cfg.mode == "mutual":
        raise ConfigError("mode", cfg.mode, "mutual learning scores one label per input; this data labels every token")
    if cfg.get("robustness", {}).get("attacks"):
        raise ConfigError(
            "robustness.attacks",
            "[...]",
            "accuracy under attack counts one label per input; this data labels every token",
        )
    if cfg.get("bow_baseline"):
        raise ConfigError(
            "bow_baseline", True, "classifies whole texts from their words; this data labels every token (set it false)"
        )
    for key, node in model_nodes(cfg):
        target = node.get("_target_")
        try:
            parameters = inspect.signature(get_object(str(target))).parameters
            takes_task = "task" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        except (ImportError, ValueError, AttributeError, TypeError):
            continue  # reported when the model is built
        if not takes_task:
            raise ConfigError(
                f"{key}._target_",
                target,
                "builds a model of one label per input; this data labels every token: use a BERT-style "
                "encoder (model/teacher=minilm_l6 or bert_small, model/student=minilm_layers or bert_tiny)",
            )


def logged_metrics(task: str, distills: bool) -> list[str]:
    """The validation metrics every module of the run logs (modules/classifier.py), those a
    callback may monitor; ``val/agreement`` (with the teacher) only when the student alone trains."""
    metrics = {
        "language_model": lambda: language_model_metrics("val/"),
        "token_classification": lambda: token_classification_metrics("val/"),
    }.get(task, lambda: classification_metrics(2, "val/"))()
    return ["val/loss", *metrics.keys(), *(["val/agreement"] if distills else [])]


def check_monitors(cfg: DictConfig, task: str) -> None:
    """Each callback's ``monitor`` (ModelCheckpoint, EarlyStopping, ...) names a metric the
    modules log, and its ``mode`` says which way is better for it: Lightning finds neither out
    before the first validation (after a whole epoch), and a wrong mode keeps the worst model."""
    logged = logged_metrics(task, distills=cfg.stage == "distill" and cfg.mode == "offline")
    for name, node in (cfg.get("callbacks") or {}).items():
        if not isinstance(node, DictConfig) or "monitor" not in node:
            continue
        monitor, mode = node.monitor, node.get("mode", "min")  # Lightning's default mode is min
        if monitor is None and _is_checkpoint(node):
            continue  # a ModelCheckpoint without a monitor keeps only the last epoch
        if monitor not in logged:
            raise ConfigError(
                f"callbacks.{name}.monitor",
                monitor,
                f"must be a metric every model of this run logs: {', '.join(logged)}",
            )
        check_choice(f"callbacks.{name}.mode", mode, ("min", "max"))
        better = "min" if monitor in LOWER_IS_BETTER else "max"
        if mode != better:
            raise ConfigError(
                f"callbacks.{name}.mode",
                mode,
                f"{monitor} is better when {'lower' if better == 'min' else 'higher'}: use mode={better}",
            )


def _is_checkpoint(node: DictConfig) -> bool:
    try:
        target = get_object(str(node.get("_target_")))
    except (ImportError, ValueError, AttributeError):
        return False  # reported when the callback is built
    return isinstance(target, type) and issubclass(target, ModelCheckpoint)


def check_max_length(cfg: DictConfig, max_length: int) -> None:
    """Every text is stored padded to ``data.max_length`` ids before any model is built (at
    100000, the tokenizer's padding alone exhausts memory and aborts the process), so the length
    is checked against the positions of each model that will read it, before the data are read:
    a pretrained folder's ``max_position_embeddings``, at most BUILT_POSITIONS for one built here."""
    for key, node in model_nodes(cfg):
        pretrained = node.get("pretrained")
        if pretrained:
            with section(key):
                positions = pretrained_positions(pretrained, node.get("converted_dir"))
            reads = f"{key}.pretrained reads at most {positions} positions (its config.json)"
        else:
            positions = BUILT_POSITIONS
            reads = (
                f"{key}, built here, reads at most {positions} positions (BERT's; a pretrained model "
                "as many as its config.json's max_position_embeddings)"
            )
        if positions is not None and max_length > positions:
            raise ConfigError("data.max_length", max_length, f"must be <= {positions}: {reads}")


def model_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(config key, model config) of each model this stage builds: the teachers, the student."""
    listed = cfg.model.get("teachers")
    teachers = (
        [(f"model.teachers[{i}]", node) for i, node in enumerate(listed)]
        if listed
        else [("model.teacher", cfg.model.teacher)]
    )
    student = [("model.student", cfg.model.student)]
    return {"teacher": teachers, "baseline": student}.get(cfg.stage, teachers + student)


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
