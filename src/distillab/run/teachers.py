"""Getting the teachers a run asks for: from a checkpoint, from the store, or trained here.

A run has one teacher (``model.teacher``), several (``model.teachers``, teacher i trained
with seed + i, where seed is ``teacher.seed`` or else the run's), or one per domain
(``teacher.per_domain``, teacher d trained only on the samples of domain d).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

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
from distillab.run.fitting import fit_and_test, test_only
from distillab.teachers.store import TeacherStore, load_teacher_weights

log = logging.getLogger(__name__)

# Trainer keys that change what a teacher learns; the rest (the student's epochs, logging,
# progress bars) must not retrain it.
TEACHER_TRAINER_KEYS = ("precision", "accumulate_grad_batches", "gradient_clip_val", "limit_train_batches")
# teacher.* keys that do not change what a teacher learns (how its outputs are cached is not).
# Where the teacher comes from, not how it is trained; nor the precision its forwards run in. (The output cache has its own group, cache.*,
# and was never part of this key.)
TEACHER_KEYS_IGNORED = ("ckpt_path", "per_domain", "seed", "precision")
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
    if not listed:
        return [TeacherSpec("teacher", "model.teacher", cfg.model.teacher, seed, ckpt_path=ckpts)]
    if ckpts is not None and (isinstance(ckpts, str) or len(ckpts) != len(listed)):
        raise ConfigError(
            "teacher.ckpt_path", ckpts, f"with {len(listed)} model.teachers, give a list of {len(listed)} paths"
        )
    return [
        TeacherSpec(f"teacher{i}", f"model.teachers[{i}]", node, seed + i, ckpt_path=ckpts[i] if ckpts else None)
        for i, node in enumerate(listed)
    ]


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
    trainer = {k: cfg.trainer.get(k) for k in TEACHER_TRAINER_KEYS}
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
    if spec.node.get("pretrained") and cfg.teacher.max_epochs == 0:
        # A pretrained model taken as it is (an instruction LLM): nothing to train, nothing to store.
        log.info("%s: the pretrained %s, used as it is (teacher.max_epochs=0)", spec.role, spec.node.pretrained)
        source, key = "pretrained", None
        test = test_only(ClassifierModule(model, num_classes, task=datamodule.task), cfg, data)
    elif spec.ckpt_path:
        load_teacher_weights(model, spec.ckpt_path)
        source, key = "checkpoint", None
        test = test_only(ClassifierModule(model, num_classes, task=datamodule.task), cfg, data)
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
                with section("teacher.optimizer"):
                    optimizer = OptimizerConfig(**cfg.teacher.optimizer)
                with section("teacher"):  # a robust teacher: adversarial training (ARD distills from one)
                    module = ClassifierModule(
                        model,
                        num_classes,
                        optimizer,
                        attack=teacher_attack(cfg),
                        adversarial_weight=cfg.teacher.get("adversarial_weight", 1.0),
                        task=datamodule.task,
                    )
                test = fit_and_test(
                    module, spec.role, cfg, data, cfg.teacher.max_epochs, spec.seed, val=val, throughput=throughput
                )
                source = "trained"
                if global_rank() == 0:
                    entry = store.save(key, model, OmegaConf.to_container(cfg, resolve=True), {"test": test})
                    log.info("stored %s in %s", spec.role, entry)
    result = {"params": model.num_parameters, "test": test, "source": source, "store_key": key}
    if spec.domain is not None:
        result["domain"] = spec.domain
    return result
