"""What the student is measured against: the teachers (from the store, a checkpoint, or trained
here), the bag-of-words baseline on text, and the reference accuracy retention divides by."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.bow_baseline import bag_of_words_baseline
from distillab.evaluation.precision import precision_agreement, precision_dtype
from distillab.run.metrics import ModelEntry
from distillab.run.plan import RunPlan
from distillab.run.tally import Tally
from distillab.run.teachers import provide_teacher

# Validation batches the teacher's lower precision is compared with float32 on.
PRECISION_BATCHES = 4


def provide_teachers(plan: RunPlan, tally: Tally) -> list[ModelEntry] | None:
    """Each teacher's weights filled in (``plan.teachers``, in place) and its entry; None when
    the run has no teacher to provide (stage=baseline, or mutual: the teacher trains with the student)."""
    if not plan.specs or plan.mutual:
        return None
    entries: list[ModelEntry] = []
    dtype = precision_dtype(plan.cfg.teacher.get("precision", "fp32"))
    for spec, model in zip(plan.specs, plan.teachers):
        with tally.timed(spec.role):
            entry: ModelEntry = {
                "role": spec.role,
                **provide_teacher(plan.cfg, spec, model, plan.datamodule, tally.val, tally.throughput),
            }
        if dtype != torch.float32:
            with tally.timed(f"{spec.role}_precision"):
                entry["precision"] = precision_agreement(model, dtype, held_out_batches(plan.datamodule))
            model.to(dtype)  # in place: every later forward (cache, live, scoring, generation) runs in it
        entries.append(entry)
    return entries


def held_out_batches(datamodule: TensorDataModule, n: int = PRECISION_BATCHES) -> list[Any]:
    """The first ``n`` batches of the validation split (the test split stays untouched by choices)."""
    return list(islice(datamodule.eval_loader("val"), n))


def text_baseline(plan: RunPlan, tally: Tally) -> dict[str, Any] | None:
    """``bow_baseline=true``: a logistic regression on word counts, the bar a text teacher must clear."""
    if not plan.cfg.get("bow_baseline"):
        return None
    texts, labels = plan.datamodule.labelled_texts()
    with tally.timed("bow_baseline"):
        return bag_of_words_baseline(texts, labels)


def reference_accuracy(teachers: list[ModelEntry], datamodule: TensorDataModule, per_domain: bool) -> float:
    """What the student is measured against: the teacher, the best of several, or the
    per-domain teachers together (each on its own domain) over the whole test split."""
    if not per_domain:
        return max(t["test"]["acc"] for t in teachers)
    domains = datamodule.splits["test"].extras["domain"]
    return sum(t["test_by_domain"][str(d)] * int((domains == d).sum()) for d, t in enumerate(teachers)) / len(domains)


@dataclass
class Retention:
    reference_acc: float  # reference_accuracy
    retention: float  # student acc / reference_acc
    param_ratio: float  # student params / the largest teacher's


def retention(plan: RunPlan, teachers: list[ModelEntry], student: ModelEntry) -> Retention:
    reference = reference_accuracy(teachers, plan.datamodule, plan.cfg.teacher.per_domain and not plan.mutual)
    return Retention(
        reference,
        student["test"]["acc"] / reference,
        student["params"] / max(t["params"] for t in teachers),
    )
