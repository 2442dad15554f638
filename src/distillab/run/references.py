"""What the student is measured against: the teachers (from the store, a checkpoint, or trained
here), the bag-of-words baseline on text, and the reference accuracy retention divides by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.bow_baseline import bag_of_words_baseline
from distillab.run.metrics import ModelEntry
from distillab.run.plan import RunPlan
from distillab.run.tally import Tally
from distillab.run.teachers import provide_teacher


def provide_teachers(plan: RunPlan, tally: Tally) -> list[ModelEntry] | None:
    """Each teacher's weights filled in (``plan.teachers``, in place) and its entry; None when
    the run has no teacher to provide (stage=baseline, or mutual: the teacher trains with the student)."""
    if not plan.specs or plan.mutual:
        return None
    entries: list[ModelEntry] = []
    for spec, model in zip(plan.specs, plan.teachers):
        with tally.timed(spec.role):
            entries.append(
                {
                    "role": spec.role,
                    **provide_teacher(plan.cfg, spec, model, plan.datamodule, tally.val, tally.throughput),
                }
            )
    return entries


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
