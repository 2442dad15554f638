"""A student cut from its teacher (``model.student.cut``): the pruning half of Minitron
(Muralidharan et al. 2024), before the healing the run's distillation does.

The teacher must be a pretrained Llama (its weights are in when the plan is built); the
calibration batches that measure layer, neuron and head importance are the first batches of
the training split, in order, so the cut is the same in every run of the same data.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, check_int, section
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.models.output import TransformerClassifier
from distillab.pruning.cut import cut_llama

log = logging.getLogger(__name__)

CUT_KEYS = ("depth", "width", "calibration_batches")


def is_cut(node: DictConfig) -> bool:
    """Whether the student config asks to be cut from the teacher rather than built."""
    return node.get("cut") is not None


def cut_student(
    node: DictConfig, teacher: TransformerClassifier, teacher_node: DictConfig, datamodule: TensorDataModule
) -> tuple[TransformerClassifier, dict[str, Any]]:
    """The student ``node.cut`` describes, cut from ``teacher``; and what the cut kept."""
    cut = OmegaConf.to_container(node.cut, resolve=True)
    if not isinstance(cut, dict):
        raise ConfigError("model.student.cut", cut, f"must be a mapping with keys {', '.join(CUT_KEYS)}")
    for name in cut:
        if name not in CUT_KEYS:
            raise ConfigError(f"model.student.cut.{name}", cut[name], f"is not a key of a cut ({', '.join(CUT_KEYS)})")
    if not teacher_node.get("pretrained"):
        raise ConfigError(
            "model.student.cut", "{...}", "cuts a student from a pretrained teacher (model.teacher.pretrained)"
        )
    n = check_int("model.student.cut.calibration_batches", cut.get("calibration_batches", 8), low=1)
    batches = [batch["inputs"] for batch in islice(datamodule.eval_loader("train"), n)]
    with section("model.student"):
        model, report = cut_llama(teacher.model, batches, depth=cut.get("depth"), width=cut.get("width"))
    student = TransformerClassifier(model, "input_ids")
    summary = report.as_dict()
    log.info("cut the student from the teacher: %s", {k: v for k, v in summary.items() if "importance" not in k})
    return student, summary
