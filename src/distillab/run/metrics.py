"""``metrics.json``: the one schema of what a run measured, written once by the run (rank 0) and
read back by the report, the sweep table, resume and ``distillab-summarize``.

The JSON layout is the dataclass's fields with the keys sorted; a key whose value is None is
left out, except the ones every run writes (``ALWAYS``: ``git_commit`` and ``objective`` may be
null). ``teacher`` is not stored apart: it is the first of ``teachers``, written as both.
Sections whose inner keys belong to another layer (a model's test metrics, the teacher
cache's summary, the compression and language-model reports) stay open mappings.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypedDict

# Test metrics by name (acc, f1, precision, recall; agreement for a distilled model; ppl for a
# language model): what the model's LightningModule logs under test/.
TestMetrics = dict[str, float]
STUDENT_ROLES = ("cut", "student", "pruned", "baseline")  # after the teachers, in this order


class MetricsError(ValueError):
    """A metrics.json that is not a run's (no ``stage``) or has a key this schema does not know."""


class ModelEntry(TypedDict, total=False):
    """One model of the run. Every entry has ``params`` and ``test``; the other keys are there
    only where they apply."""

    role: str  # teachers: "teacher", "teacher0", ...
    params: int
    test: TestMetrics
    source: str  # teachers: trained, store, checkpoint, mutual or pretrained (used as it is)
    precision: dict[str, Any]  # teachers in teacher.precision: its top-1 agreement with fp32, both speeds
    cut: dict[str, Any]  # a student cut from its teacher: what was kept (pruning/cut.py CutReport)
    store_key: str | None  # teachers from the store or trained here (None: from a checkpoint)
    domain: int  # a per-domain teacher's domain
    test_by_domain: dict[str, float]  # data with domains: test accuracy per domain
    robust: dict[str, float]  # robustness.attacks: accuracy clean and under each attack
    nonzero_params: int  # pruned
    pruning: dict[str, Any]  # pruned: what the pruning step reported
    target: str  # pruned: which model was pruned (student or teacher)


class Throughput(TypedDict):
    """A training's steps alone (no validation, checkpoints or cache building)."""

    epoch_seconds: list[float]
    items_per_s: float | None


@dataclass
class RunMetrics:
    stage: str
    mode: str | None = None
    seed: int | None = None
    git_commit: str | None = None
    data: dict[str, int] = field(default_factory=dict)  # split sizes
    seconds: dict[str, float] = field(default_factory=dict)  # by step; "total" for the run
    val: dict[str, float] = field(default_factory=dict)  # best val score of each trained model, by role
    throughput: dict[str, Throughput] = field(default_factory=dict)  # by role
    objective: float | None = None  # the final model's best val score: what a search optimises
    teachers: list[ModelEntry] | None = None
    cut: ModelEntry | None = None  # model.student.cut: the student cut from the teacher, before any training
    student: ModelEntry | None = None
    stages: dict[str, TestMetrics] | None = None  # staged distillation: the student's test metrics per stage
    baseline: ModelEntry | None = None
    pruned: ModelEntry | None = None
    teacher_cache: dict[str, Any] | None = None  # TeacherOutputCache.summary()
    capture: dict[str, Any] | None = None  # stage=capture: each split's entry (key, rows, shards, bytes)
    bow_baseline: dict[str, Any] | None = None  # bag-of-words logistic regression: test, val_acc, features
    onnx: dict[str, Any] | None = None  # path, top1_agreement, max_abs_diff, samples
    hf_export: dict[str, Any] | None = None  # compression.hf: the folder written, or why not
    compression: dict[str, dict[str, Any]] | None = None  # a row per model: sizes, latency, speed-up
    language_model: dict[str, dict[str, Any]] | None = None  # per role: agreement, train_tokens_per_s, generations
    reference_acc: float | None = None  # the teacher accuracy retention is measured against
    retention: float | None = None  # student acc / reference_acc
    param_ratio: float | None = None  # student params / the largest teacher's
    reused_from: str | None = None  # a skipped sweep job: the run folder its results come from
    resumed_in: str | None = None  # a continued run: the folder it ran in

    ALWAYS: ClassVar[tuple[str, ...]] = ("stage", "git_commit", "data", "seconds", "val", "throughput", "objective")

    @property
    def teacher(self) -> ModelEntry | None:
        return self.teachers[0] if self.teachers else None

    def entries(self) -> list[tuple[str, ModelEntry]]:
        """(role, entry) of every model, teachers first, then student, pruned and baseline."""
        teachers = [(t.get("role", "teacher"), t) for t in self.teachers or []]
        return teachers + [(role, e) for role in STUDENT_ROLES if (e := getattr(self, role)) is not None]

    def entry(self, role: str) -> ModelEntry:
        """The entry of ``role`` (``teacher`` is the first teacher); KeyError when the run has none."""
        found = self.teacher if role == "teacher" else dict(self.entries()).get(role)
        if found is None:
            raise KeyError(role)
        return found

    def to_json(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None or f.name in self.ALWAYS
        }
        if self.teachers:
            out["teacher"] = self.teachers[0]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunMetrics:
        """The inverse of :meth:`to_json`. Keys a run always writes may be missing (a hand-made
        or partial file): they take their defaults. An older run's lone ``teacher`` (no
        ``teachers``) becomes the list of one."""
        if not isinstance(data, Mapping) or "stage" not in data:
            raise MetricsError("not a run's metrics.json (no 'stage')")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"teacher"})
        if unknown:
            raise MetricsError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
        values = {k: v for k, v in data.items() if k in names}
        if "teachers" not in values and "teacher" in data:
            values["teachers"] = [data["teacher"]]
        return cls(**values)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> RunMetrics:
        return cls.from_json(json.loads(path.read_text()))


def git_commit() -> str | None:
    """The short hash of the checkout the code runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or None
    except OSError:
        return None
