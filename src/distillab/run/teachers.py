"""Getting the teachers a run asks for: from a checkpoint, from the store, or trained here.

A run has one teacher (``model.teacher``), several (``model.teachers``, teacher i trained
with seed + i, where seed is ``teacher.seed`` or else the run's), or one per domain
(``teacher.per_domain``, teacher d trained only on the samples of domain d).
"""

from __future__ import annotations

import inspect
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, build, check_int, section
from distillab.core.distributed import global_rank, is_distributed
from distillab.core.keys import teacher_key
from distillab.data.abilities import ImageData
from distillab.data.images.augment import random_shift
from distillab.data.row_identity import NO_IDENTITY, DataIdentity, data_identity
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import weights_hash
from distillab.modules import ClassifierModule, OptimizerConfig
from distillab.run.fitting import fit_and_test, holding_signals, raise_if_signalled, test_only
from distillab.teachers.store import TeacherStore, load_teacher_weights

log = logging.getLogger(__name__)

# Every argument of Lightning's Trainer (2.6), by what it does to a teacher trained with it.
# Those that change what it learns, or the test metrics stored with it, are in its store key
# when set to other than Lightning's default (so `+trainer.max_steps=-1` is the unset key):
# how long and on what it trains, how it steps, how its best checkpoint is chosen (validation
# batches and frequency), the random stream it draws from (sanity-check batches draw from it),
# and how many processes share a batch.
TEACHER_TRAINER_KEYS = (
    "strategy",
    "devices",
    "num_nodes",
    "precision",
    "min_epochs",
    "max_steps",
    "min_steps",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "overfit_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "deterministic",
    "benchmark",
    "use_distributed_sampler",
    "sync_batchnorm",
    "reload_dataloaders_every_n_epochs",
)
# A teacher trained with one of these set is used by its run but never stored: a debug run
# (fast_dev_run: a few batches, no checkpoints) or one cut by the wall clock (max_time: where
# it stops depends on the machine), which no later run asking for the same teacher should get.
TEACHER_UNSTORABLE_KEYS = ("fast_dev_run", "max_time")
# Where it runs, what it reports and how (the student's epochs: the teacher has teacher.max_epochs).
TRAINER_KEYS_IGNORED = (
    "accelerator",
    "logger",
    "callbacks",
    "max_epochs",
    "limit_predict_batches",
    "log_every_n_steps",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "inference_mode",
    "profiler",
    "detect_anomaly",
    "barebones",
    "plugins",
    "default_root_dir",
    "enable_autolog_hparams",
    "model_registry",
)
# teacher.* keys that do not change what a teacher learns (how its outputs are cached is not).
# Where the teacher comes from, not how it is trained; nor the precision its forwards run in. (The output cache has its own group, cache.*,
# and was never part of this key.)
TEACHER_KEYS_IGNORED = ("ckpt_path", "per_domain", "seed", "precision")
# Callbacks that only show or log (every other callback, early stopping or the checkpoint's
# monitor, changes what a teacher learns or which of its checkpoints is tested and stored).
CALLBACKS_IGNORED = tuple(
    f"lightning.pytorch.callbacks.{name}"
    for name in (
        "TQDMProgressBar",
        "RichProgressBar",
        "LearningRateMonitor",
        "DeviceStatsMonitor",
        "ModelSummary",
        "RichModelSummary",
    )
)
# Data keys that do not change what a teacher learns.
# (tokenizer_dir: where the tokenizer is kept; its content enters the key as a fingerprint.)
# (labelled_fraction, label_seed, unlabelled: only the student's labels; a teacher sees all.)
# (max_train_tokens: a language-model student's token budget; its teacher reads the whole corpus.)
DATA_KEYS_IGNORED = (
    "num_workers",
    "eval_batch_size",
    "tokenizer_dir",
    "labelled_fraction",
    "label_seed",
    "unlabelled",
    "max_train_tokens",
)


@dataclass
class TeacherSpec:
    role: str  # "teacher", "teacher0", ...: names its checkpoints, logs and metrics
    key: str  # config key of its model, for error messages
    node: DictConfig
    seed: int
    domain: int | None = None
    ckpt_path: str | None = None


def teacher_seed(cfg: DictConfig) -> int:
    """``teacher.seed`` when set (one teacher for a sweep over student seeds), else the run's seed."""
    seed = cfg.teacher.get("seed")
    return cfg.seed if seed is None else check_int("teacher.seed", seed, low=0)


def check_teacher_augmentation(cfg: DictConfig, datamodule: TensorDataModule) -> None:
    shift = check_int("teacher.random_shift", cfg.teacher.get("random_shift") or 0, low=0, high=4)
    if shift and not isinstance(datamodule, ImageData):
        raise ConfigError("teacher.random_shift", shift, "translates images; this data has none (use 0)")


def teacher_specs(cfg: DictConfig, num_domains: int) -> list[TeacherSpec]:
    listed = cfg.model.get("teachers")
    ckpts = cfg.teacher.ckpt_path
    seed = teacher_seed(cfg)
    if cfg.teacher.per_domain:
        if num_domains < 2:
            raise ConfigError(
                "teacher.per_domain", True, "needs data whose samples carry a domain (data=digits_domains)"
            )
        if listed or ckpts:
            raise ConfigError(
                "teacher.per_domain",
                True,
                "trains one model.teacher per domain; unset model.teachers and teacher.ckpt_path",
            )
        return [
            TeacherSpec(f"teacher{d}", "model.teacher", cfg.model.teacher, seed, domain=d) for d in range(num_domains)
        ]
    if not listed:  # one path, or a list of one (run/checks.py refuses a longer list)
        path = ckpts if ckpts is None or isinstance(ckpts, str) else ckpts[0]
        return [TeacherSpec("teacher", "model.teacher", cfg.model.teacher, seed, ckpt_path=path)]
    if ckpts is not None and (isinstance(ckpts, str) or len(ckpts) != len(listed)):
        raise ConfigError(
            "teacher.ckpt_path", ckpts, f"with {len(listed)} model.teachers, give a list of {len(listed)} paths"
        )
    return [
        TeacherSpec(f"teacher{i}", f"model.teachers[{i}]", node, seed + i, ckpt_path=ckpts[i] if ckpts else None)
        for i, node in enumerate(listed)
    ]


@cache
def trainer_defaults() -> dict[str, Any]:
    """Lightning's Trainer arguments and their defaults."""
    parameters = inspect.signature(L.Trainer.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def _is_set(cfg: DictConfig, key: str) -> bool:
    return key in cfg.trainer and cfg.trainer[key] != trainer_defaults()[key]


def teacher_trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The Trainer keys of the store key: those of TEACHER_TRAINER_KEYS that ``cfg`` sets."""
    plain = lambda v: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v  # noqa: E731
    return {key: plain(cfg.trainer[key]) for key in TEACHER_TRAINER_KEYS if _is_set(cfg, key)}


def unstorable_reason(cfg: DictConfig) -> str | None:
    """Why a teacher trained with ``cfg`` must not enter the store (TEACHER_UNSTORABLE_KEYS), or None."""
    for key in TEACHER_UNSTORABLE_KEYS:
        if _is_set(cfg, key) and cfg.trainer[key]:
            why = "a debug run" if key == "fast_dev_run" else "its end depends on the machine's speed"
            return f"trainer.{key}={cfg.trainer[key]!r}: {why}"
    return None


def teacher_attack(cfg: DictConfig) -> Any:
    """``teacher.attack`` built (an Attack), or None: the teacher trains on clean inputs only."""
    node = cfg.teacher.get("attack")
    return build(node, "teacher.attack") if node else None


def store_key(cfg: DictConfig, spec: TeacherSpec, identity: DataIdentity = NO_IDENTITY) -> str:
    """Hash of everything that determines a trained teacher (``identity``: what the data config
    does not say, e.g. the trained tokenizer's hash and the rows read, and the data keys that
    only say where those rows are, left out so that the same rows in any file give one key)."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    teacher = {k: v for k, v in plain(cfg.teacher).items() if k not in TEACHER_KEYS_IGNORED}
    ignored = (*DATA_KEYS_IGNORED, *identity.location_keys)
    data = {k: v for k, v in plain(cfg.data).items() if k not in ignored}
    trainer = teacher_trainer_settings(cfg)
    callbacks = {
        name: plain(node)
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None and node.get("_target_") not in CALLBACKS_IGNORED
    }
    pretrained = spec.node.get("pretrained")
    with section(f"{spec.key}.pretrained"):  # fine-tuned from a folder: its weights are part of the teacher
        weights = weights_hash(pretrained) if pretrained else None
    return teacher_key(
        {
            # converted_dir: where a GGUF is kept converted, not what the teacher is.
            "model": {k: v for k, v in plain(spec.node).items() if k != "converted_dir"},
            "data": data,
            "teacher": teacher,
            "trainer": trainer,
            "callbacks": callbacks,
            "seed": spec.seed,
            "domain": spec.domain,
            "data_fingerprint": identity.fingerprint,
            **({"pretrained_weights": weights} if weights else {}),
        }
    )


def provide_teacher(
    cfg: DictConfig,
    spec: TeacherSpec,
    model: TransformerClassifier,
    datamodule: TensorDataModule,
    val: dict[str, float] | None = None,
    throughput: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Fill ``model`` with trained weights; return its params, test metrics and where it came from
    (``val[role]``: its best validation accuracy, when trained here)."""
    data = datamodule.for_teacher()  # every label, even when the student gets few
    data = data.restricted_to_domain(spec.domain) if spec.domain is not None else data
    if cfg.teacher.get("random_shift"):  # Hinton et al. 2015 jittered the teacher's inputs, not the student's
        data = data.augmented(partial(random_shift, max_shift=cfg.teacher.random_shift))
    num_classes = datamodule.num_classes
    train = partial(_train_teacher, cfg, spec, model, num_classes, data, val, throughput)
    if spec.node.get("pretrained") and cfg.teacher.max_epochs == 0:
        # A pretrained model taken as it is (an instruction LLM): nothing to train, nothing to store.
        log.info("%s: the pretrained %s, used as it is (teacher.max_epochs=0)", spec.role, spec.node.pretrained)
        source, key = "pretrained", None
        test = test_only(ClassifierModule(model, num_classes, task=datamodule.task), cfg, data)
    elif spec.ckpt_path:
        load_teacher_weights(model, spec.ckpt_path)
        source, key = "checkpoint", None
        test = test_only(ClassifierModule(model, num_classes, task=datamodule.task), cfg, data)
    elif (unstorable := unstorable_reason(cfg)) is not None:
        log.warning("%s: trained here and not stored in the teacher store (%s)", spec.role, unstorable)
        source, key, test = "trained", None, train()
    else:
        store, key = TeacherStore(cfg.paths.teachers_dir), store_key(cfg, spec, data_identity(datamodule))
        # Parallel jobs of a sweep that need this teacher: the first trains it, the others wait
        # here and reuse it. DDP ranks train it together (no lock: the ranks must meet in fit)
        # and only rank 0 writes it.
        with nullcontext() if is_distributed(cfg) else store.lock(key):
            entry = store.lookup(key)
            if entry is not None:
                log.info("reusing %s from the store: %s", spec.role, entry)
                load_teacher_weights(model, entry, key="paths.teachers_dir")
                source, test = "store", store.metrics(key)["test"]
            else:
                source, test = "trained", train()
                if global_rank() == 0:
                    with holding_signals():  # a teacher trained to the end is stored whole, then the run stops
                        entry = store.save(key, model, OmegaConf.to_container(cfg, resolve=True), {"test": test})
                    log.info("stored %s in %s", spec.role, entry)
                    raise_if_signalled()
    result = {"params": model.num_parameters, "test": test, "source": source, "store_key": key}
    if spec.domain is not None:
        result["domain"] = spec.domain
    return result


def _train_teacher(
    cfg: DictConfig,
    spec: TeacherSpec,
    model: TransformerClassifier,
    num_classes: int,
    data: TensorDataModule,
    val: dict[str, float] | None,
    throughput: dict[str, dict] | None,
) -> dict[str, float]:
    """Train ``model`` as ``spec``'s teacher on ``data``; its test metrics."""
    with section("teacher.optimizer"):
        optimizer = OptimizerConfig(**cfg.teacher.optimizer)
    with section("teacher"):  # a robust teacher: adversarial training (ARD distills from one)
        module = ClassifierModule(
            model,
            num_classes,
            optimizer,
            attack=teacher_attack(cfg),
            adversarial_weight=cfg.teacher.get("adversarial_weight", 1.0),
            task=data.task,
        )
    return fit_and_test(module, spec.role, cfg, data, cfg.teacher.max_epochs, spec.seed, val=val, throughput=throughput)
