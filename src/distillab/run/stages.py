"""Staged distillation: a list of named stages run in order, passing the student on.

TinyBERT (Jiao et al. 2020) distils in two stages, general (intermediate layers, on plain
text) then task-specific (logits, on the task's data); our source material ends with a
fine-tune of the student on labels alone. ``stages`` says this in config::

    stages:
      - {name: general, loss: {...tinybert terms...}, data: {unlabelled: more.txt}, max_epochs: 2}
      - {name: task, loss: ${loss}}
      - {name: finetune, loss: {_target_: distillab.losses.CompositeLoss,
                                terms: {ce: {_target_: distillab.losses.CrossEntropy}}, weights: {ce: 1.0}}}

Each stage may set ``loss`` (default: the run's ``loss``), ``data`` (keys merged onto the
run's ``data``), ``max_epochs`` (default ``trainer.max_epochs``) and ``optimizer`` (keys
merged onto the run's ``optimizer``). Every stage is built and checked before the first one
trains; an error names the stage. Each stage's test metrics go into ``metrics.json`` under
``stages.<name>``; the last stage's student is the run's student.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, build, check_int, section
from distillab.data.abilities import TakesTokenizer
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.losses import CompositeLoss
from distillab.models.output import EncoderShape
from distillab.modules import OptimizerConfig

log = logging.getLogger(__name__)

STAGE_KEYS = ("name", "loss", "data", "max_epochs", "optimizer")


@dataclass
class Stage:
    name: str
    loss: CompositeLoss
    datamodule: TensorDataModule
    max_epochs: int
    optimizer: OptimizerConfig


class StageError(RuntimeError):
    """A stage that failed while training, named."""


def _merged(base: DictConfig, changes: Any, key: str) -> DictConfig:
    if changes is None:
        return base
    if not isinstance(changes, DictConfig):
        raise ConfigError(key, changes, "must be a mapping of keys to change")
    return OmegaConf.merge(base, changes)


def plan_stages(
    cfg: DictConfig, datamodule: TensorDataModule, student: EncoderShape, teachers: list[EncoderShape]
) -> list[Stage]:
    """Build and check every stage of ``cfg.stages`` (empty: none) before anything trains."""
    nodes = cfg.get("stages") or []
    if not OmegaConf.is_list(nodes) and not isinstance(nodes, list):
        raise ConfigError(
            "stages", nodes, "must be a list of stages ({name: ..., loss: ..., data: ..., max_epochs: ...})"
        )
    if nodes and cfg.mode != "offline":
        raise ConfigError("stages", "[...]", "stages distil from frozen teachers: use mode=offline")
    stages, names = [], set()
    for i, node in enumerate(nodes):
        where = f"stages[{i}]"
        if not isinstance(node, DictConfig) or not isinstance(node.get("name"), str) or not node.name:
            raise ConfigError(
                f"{where}.name",
                None if not isinstance(node, DictConfig) else node.get("name"),
                "every stage needs a name (a non-empty string)",
            )
        where = f"stages[{i}]({node.name})"
        unknown = sorted(set(node) - set(STAGE_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}", node[unknown[0]], f"unknown stage key; allowed: {', '.join(STAGE_KEYS)}"
            )
        if node.name in names:
            raise ConfigError(f"{where}.name", node.name, "names a stage twice; stage names must differ")
        names.add(node.name)
        # Detached from the run's config, so errors name keys relative to the stage's loss.
        loss_node = OmegaConf.create(OmegaConf.to_container(node.get("loss") or cfg.loss, resolve=True))
        loss = build(loss_node, f"{where}.loss")
        if not isinstance(loss, CompositeLoss):
            raise ConfigError(
                f"{where}.loss",
                loss_node.get("_target_"),
                "must be a distillation loss (a CompositeLoss: kd, tinybert, ...)",
            )
        with section(f"{where}.loss"):
            loss.setup(student, teachers)
        data = datamodule
        if node.get("data") is not None:
            data = build(_merged(cfg.data, node.data, f"{where}.data"), f"{where}.data")
            with section(f"{where}.data"):
                if isinstance(datamodule, TakesTokenizer) and datamodule.tokenizer_file is not None:
                    data.use_tokenizer(datamodule.tokenizer_file)
                data.setup()
            if data.fingerprint() != datamodule.fingerprint() or data.num_classes != datamodule.num_classes:
                raise ConfigError(
                    f"{where}.data",
                    OmegaConf.to_container(node.data),
                    "gives data the models cannot "
                    "read: another tokenizer or label set than the run's data; change files or "
                    "fractions, not the vocabulary",
                )
        epochs = check_int(f"{where}.max_epochs", node.get("max_epochs", cfg.trainer.max_epochs), low=1)
        with section(f"{where}.optimizer"):
            optimizer = OptimizerConfig(**_merged(cfg.optimizer, node.get("optimizer"), "optimizer"))
        stages.append(Stage(node.name, loss, data, epochs, optimizer))
    return stages


def run_stages(stages: list[Stage], train: Callable[[Stage], dict[str, float]]) -> dict[str, dict[str, float]]:
    """``train(stage)`` for each stage in order (it trains the one student in place and returns
    its test metrics); a stage that fails is named in the error."""
    results: dict[str, dict[str, float]] = {}
    for i, stage in enumerate(stages):
        log.info(
            "stage %d/%d: %s (%d epochs, loss terms %s)",
            i + 1,
            len(stages),
            stage.name,
            stage.max_epochs,
            ", ".join(stage.loss.terms),
        )
        try:
            results[stage.name] = train(stage)
        except ConfigError as err:
            raise err.under(f"stages[{i}]({stage.name})") from None
        except Exception as err:
            raise StageError(f"stage {i} ({stage.name}) failed: {type(err).__name__}: {err}") from err
    return results
