"""The statistics of a sweep for ``distillab-summarize``: per group of jobs (a setting, over its
seeds) and per model, mean ± sample std of test accuracy, error, error count, F1, agreement,
latency (or, for language models, perplexity and tokens/s), and on the student (and pruned)
rows the share of the teacher-baseline gap that distillation closes and the gain over the
student trained alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from distillab.run.metrics import STUDENT_ROLES, ModelEntry, RunMetrics
from distillab.run.summary_jobs import Job

STUDENTS = ("student", "pruned")
# (statistic, decimals in the tables); error is in percent, test_errors a count
STATS = (
    ("ppl", 2),
    ("acc", 4),
    ("error", 2),
    ("test_errors", 1),
    ("f1", 4),
    ("agreement", 4),
    ("tokens_per_s", 0),
    ("latency_ms_b1", 2),
    ("latency_ms_b64", 2),
)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for fewer than two values, both for none."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None


def gap_closed(err_teacher: float | None, err_student: float | None, err_baseline: float | None) -> float | None:
    """(err_baseline - err_student) / (err_baseline - err_teacher): the share of the gap between
    the student trained alone and its teacher that distillation closes (Hinton et al. 2015).
    None when a term is missing or the teacher is not better than the baseline (no gap)."""
    if None in (err_teacher, err_student, err_baseline) or err_baseline - err_teacher <= 0:
        return None
    return (err_baseline - err_student) / (err_baseline - err_teacher)


def as_metrics(metrics: RunMetrics | Mapping[str, Any]) -> RunMetrics:
    """A job's metrics, given as read (RunMetrics) or in their JSON form."""
    return metrics if isinstance(metrics, RunMetrics) else RunMetrics.from_json(metrics)


def observations(metrics: RunMetrics, role: str, entry: ModelEntry) -> dict[str, float]:
    """The figures of one model in one job; error in percent, test_errors a count. A language
    model: held-out perplexity, next-token accuracy, agreement with the teacher, tokens/s."""
    test, compression = entry["test"], (metrics.compression or {}).get(role, {})
    if metrics.language_model is not None:
        lm = metrics.language_model.get(role, {})
        seen = {
            "ppl": test["ppl"],
            "acc": test["acc"],
            "agreement": lm.get("agreement"),
            "tokens_per_s": lm.get("train_tokens_per_s"),
        }
        return {k: v for k, v in seen.items() if v is not None}
    seen = {"acc": test["acc"], "error": 100 * (1 - test["acc"]), "f1": test.get("f1")}
    n_test = metrics.data.get("test")
    if n_test:
        seen["test_errors"] = round((1 - test["acc"]) * n_test)
    if role in STUDENTS:
        seen["agreement"] = test.get("agreement")
    seen.update({k: compression.get(k) for k in ("latency_ms_b1", "latency_ms_b64")})
    seen.update({f"acc {k}": v for k, v in entry.get("robust", {}).items() if k != "clean"})  # under attack
    return {k: v for k, v in seen.items() if v is not None}


def stats(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """STATS, then the accuracy under each attack the jobs measured (``acc pgd@0.1``, ...)."""
    robust = dict.fromkeys(
        k.removesuffix("_mean") for r in rows for k in r if k.startswith("acc ") and k.endswith("_mean")
    )
    return [*STATS, *((k, 4) for k in robust)]


def summarize_group(jobs: Sequence[RunMetrics | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per model role over a group's jobs: n, params, and ``<stat>_mean``/``<stat>_std``;
    ``gap_closed`` on student and pruned rows, from the group's mean errors."""
    metrics_list = [as_metrics(m) for m in jobs]
    per_role: dict[str, list[tuple[RunMetrics, ModelEntry]]] = {}
    for metrics in metrics_list:
        for role, entry in metrics.entries():
            per_role.setdefault(role, []).append((metrics, entry))
    late = STUDENT_ROLES  # teachers first, in their order, then these
    order = [r for r in per_role if r not in late] + [r for r in late if r in per_role]
    rows = []
    for role in order:
        seen = [observations(m, role, e) for m, e in per_role[role]]
        row: dict[str, Any] = {
            "model": role,
            "n": len(seen),
            "params": mean_std([e["params"] for _, e in per_role[role]])[0],
        }
        robust = dict.fromkeys(k for s in seen for k in s if k.startswith("acc "))
        for stat in (*(s for s, _ in STATS), *robust):
            row[f"{stat}_mean"], row[f"{stat}_std"] = mean_std([s[stat] for s in seen if stat in s])
        rows.append(row)
    # The teacher the pipeline measures retention against (the best one, or the per-domain
    # teachers combined); without it, the best teacher's mean accuracy.
    if any(r.get("ppl_mean") is not None for r in rows):  # language models: the gap in log-perplexity (nats per token)
        log_ppl = {r["model"]: math.log(r["ppl_mean"]) for r in rows if r.get("ppl_mean")}
        teacher = min((v for k, v in log_ppl.items() if k not in (*STUDENTS, "baseline")), default=None)
        for row in rows:
            if row["model"] in STUDENTS and row["model"] in log_ppl:
                row["gap_closed"] = gap_closed(teacher, log_ppl[row["model"]], log_ppl.get("baseline"))
                base = next((r["ppl_mean"] for r in rows if r["model"] == "baseline"), None)
                row["ppl_vs_alone"] = None if base is None else row["ppl_mean"] - base  # lower is better
        return rows
    refs = [m.reference_acc for m in metrics_list if m.reference_acc is not None]
    teacher_accs = [r["acc_mean"] for r in rows if r["model"] not in (*STUDENTS, "baseline")]
    err_t = 100 * (1 - mean_std(refs)[0]) if refs else (100 * (1 - max(teacher_accs)) if teacher_accs else None)
    err_b = next((r["error_mean"] for r in rows if r["model"] == "baseline"), None)
    for row in rows:
        if row["model"] in STUDENTS:
            row["gap_closed"] = gap_closed(err_t, row["error_mean"], err_b)
            # Accuracy points over the student trained alone (mean of each).
            row["vs_alone"] = None if err_b is None else err_b - row["error_mean"]
    return rows


def summary_rows(groups: dict[tuple, list[Job]], keys: list[str]) -> list[dict[str, Any]]:
    """Rows of every group, its key values first and its failed jobs counted; a group whose
    jobs all failed gets one row so that it is not silently missing."""
    rows = []
    for values, jobs in groups.items():
        done = [j.metrics for j in jobs if j.metrics is not None]
        head = dict(zip(keys, values))
        group_rows = summarize_group(done) or [{"model": "-", "n": 0}]
        rows += [{**head, **row, "failed": len(jobs) - len(done)} for row in group_rows]
    return rows
