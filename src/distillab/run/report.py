"""The run's report: ``metrics.json``, ``report.md`` and the end-of-run console table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distillab.evaluation.compression import COLUMNS, compression_markdown, format_cell
from distillab.models.generation import format_generations
from distillab.run.metrics import ModelEntry, RunMetrics

LANGUAGE_MODEL_NOTE = (
    "ppl: perplexity on the held-out test blocks, exp of the mean next-token negative log-likelihood; "
    "next-token acc: how often the most likely next token is the actual one; agreement: the share of test "
    "positions where a model's most likely next token is the teacher's; train tokens/s: tokens over the time of "
    "the training steps alone (no validation, checkpoints or cache building); response ppl: perplexity of the "
    "lm.responses test answers, completion tokens only; PIQA acc / acc_norm: lm-evaluation-harness's scoring "
    "(log-likelihood of each solution, acc_norm per character); MB: the parameters' bytes; tokens/s @b: forward "
    "tokens per second at batch b; cut: the student cut from the teacher, before healing."
)


def summary_rows(metrics: RunMetrics) -> list[dict[str, str]]:
    """One row per model that ran: params, accuracy, F1, agreement, retention of the
    reference (teacher) accuracy, and accuracy per domain when the data has domains."""
    entries = metrics.entries()
    reference = metrics.reference_acc or (entries[0][1]["test"]["acc"] if metrics.teachers else None)
    domains = sorted({d for _, e in entries for d in e.get("test_by_domain", {})})
    robust = list(dict.fromkeys(k for _, e in entries for k in e.get("robust", {}) if k != "clean"))
    if metrics.language_model is not None:
        return language_model_rows(metrics, entries)
    rows = []
    for role, entry in entries:
        test = entry["test"]
        row = {
            "model": role,
            "params": f"{entry['params']:,}",
            "acc": f"{test['acc']:.4f}",
            "f1": f"{test['f1']:.4f}",
            "agreement": f"{test['agreement']:.4f}" if "agreement" in test else "-",
            "retention": f"{test['acc'] / reference:.3f}" if reference else "-",
        }
        for d in domains:
            acc = entry.get("test_by_domain", {}).get(d)
            row[f"acc domain {d}"] = f"{acc:.4f}" if acc is not None else "-"
        for key in robust:  # accuracy under attack (robustness.attacks), e.g. "acc pgd@0.1"
            acc = entry.get("robust", {}).get(key)
            row[f"acc {key}"] = f"{acc:.4f}" if acc is not None else "-"
        rows.append(row)
    if metrics.bow_baseline is not None:  # a linear model on word counts: the bar a text teacher must clear
        bow = metrics.bow_baseline
        rows.append(
            {
                **({k: "-" for k in rows[0]} if rows else {}),
                "model": "bag-of-words LR",
                "params": f"{bow['features']:,} features",
                "acc": f"{bow['test']['acc']:.4f}",
            }
        )
    return rows


def language_model_rows(metrics: RunMetrics, entries: list[tuple[str, ModelEntry]]) -> list[dict[str, str]]:
    """One row per language model: held-out perplexity, next-token accuracy, top-1 agreement
    with the teacher, and training throughput."""
    extra = metrics.language_model or {}
    scored = {key for lm in extra.values() for key in lm}
    speeds = sorted({b for lm in extra.values() for b in lm.get("tokens_per_s", {})}, key=int)
    rows = []
    for role, entry in entries:
        lm = extra.get(role, {})
        agreement = lm.get("agreement")
        rate = lm.get("train_tokens_per_s")
        row = {
            "model": role,
            "params": f"{entry['params']:,}",
            "ppl": f"{entry['test']['ppl']:.2f}",
            "next-token acc": f"{entry['test']['acc']:.4f}",
            "agreement": f"{agreement:.4f}" if agreement is not None else "-",
        }
        if "response_ppl" in scored:
            row["response ppl"] = f"{lm['response_ppl']:.2f}" if "response_ppl" in lm else "-"
        if "piqa" in scored:
            piqa = lm.get("piqa")
            row["PIQA acc"] = f"{piqa['acc']:.3f}" if piqa else "-"
            row["PIQA acc_norm"] = f"{piqa['acc_norm']:.3f}" if piqa else "-"
        if "bytes" in scored:
            row["MB"] = f"{lm['bytes'] / 2**20:,.1f}" if "bytes" in lm else "-"
        for b in speeds:
            speed = lm.get("tokens_per_s", {}).get(b)
            row[f"tokens/s @{b}"] = f"{speed:,.0f}" if speed else "-"
        row["train tokens/s"] = f"{rate:,.0f}" if rate else "-"
        rows.append(row)
    return rows


def answers_table(language_model: dict[str, dict[str, Any]]) -> str:
    """Each question's greedy answer by every model that has answers, side by side (markdown)."""
    answered = {role: lm["answers"] for role, lm in language_model.items() if lm.get("answers")}
    if not answered:
        return ""
    cell = lambda text: " ".join(str(text).split()).replace("|", "\\|")  # noqa: E731
    header = "| question | " + " | ".join(answered) + " |"
    lines = [header, "|" + "|".join("---" for _ in range(len(answered) + 1)) + "|"]
    for i, first in enumerate(next(iter(answered.values()))):
        answers = [cell(a[i]["answer"]) if i < len(a) else "-" for a in answered.values()]
        lines.append("| " + " | ".join([cell(first["question"]), *answers]) + " |")
    return "\n".join(lines)


def capture_lines(metrics: RunMetrics) -> list[str]:
    """stage=capture: each split's entry, its rows, shards and bytes."""
    capture = metrics.capture or {}
    lines = [
        f"Captured teacher outputs, {split}: {entry['rows']:,} rows in {entry['shards']} shards, "
        f"{entry['bytes'] / 2**20:.1f} MB, entry {entry['key']}.  "
        for split, entry in capture.get("splits", {}).items()
    ]
    if lines:
        lines.append(
            f"Shards computed here: {capture['shards_computed_here']}, found finished: {capture['shards_reused']}."
        )
        lines.append("")
    return lines


def language_model_lines(metrics: RunMetrics) -> list[str]:
    """The teacher cache's size and build time, then each model's generations."""
    lines = []
    for split, size in (metrics.teacher_cache or {}).get("splits", {}).items():
        k, samples = size.get("topk"), size.get("samples") or 0
        form = (f"{k} slots, top {k - samples} + {samples} sampled" if samples else f"top-{k}") if k else "dense"
        dense = size.get("dense_logits_bytes")
        built = size.get("build_seconds")
        lines.append(
            f"Teacher cache, {split}: {form}, {size['bytes'] / 2**20:.1f} MB"
            + (f" (dense logits: {dense / 2**20:,.0f} MB, {dense / size['bytes']:.0f}x)" if dense else "")
            + (f", built in {built:.1f} s" if built is not None else ", reused")
            + ".  "
        )
    if lines:
        lines.append("")
    lm = metrics.language_model or {}
    table = answers_table({role: lm[role] for role, _ in metrics.entries() if role in lm})  # teachers first
    if table:
        lines += ["Greedy answers (chat template):", "", table, ""]
    for role, entry in (metrics.language_model or {}).items():
        if entry.get("generations"):
            lines += [format_generations(entry["generations"], f"Generations: {role}"), ""]
    return lines


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


def write_report(metrics: RunMetrics, run_dir: Path, overrides: list[str]) -> None:
    """``metrics.json`` (the only place a run writes it) and ``report.md``."""
    metrics.write(run_dir / "metrics.json")
    command = "distillab " + " ".join(overrides)
    lines = [
        "# distillab run",
        "",
        f"Command: `{command.strip()}`  ",
        f"Stage: `{metrics.stage}`, seed {metrics.seed}, git {metrics.git_commit or 'unknown'}",
        "",
        "Test split:",
        "",
        markdown_table(summary_rows(metrics)),
        "",
        *compression_lines(metrics),
        *capture_lines(metrics),
        *language_model_lines(metrics),
        (
            LANGUAGE_MODEL_NOTE
            if metrics.language_model is not None
            else "Retention is test accuracy relative to the teacher's (the best teacher's when there are "
            "several; the per-domain teachers' combined accuracy when each domain has its own; a "
            "per-domain teacher's own `acc` is on its domain)."
        )
        + " The resolved config is `config.yaml`; all numbers are in `metrics.json`.",
        "",
    ]
    (run_dir / "report.md").write_text("\n".join(lines))


def compression_lines(metrics: RunMetrics) -> list[str]:
    if metrics.compression is None:
        return []
    rows = [{"name": name, **row} for name, row in metrics.compression.items()]
    lines = [
        "Compression (CPU latency: median of 20 forwards after 5 warm-up, 1 thread; sizes of the "
        "state dict, dense and zlib-compressed):",
        "",
        compression_markdown(rows),
    ]
    if metrics.onnx is not None:
        lines += [
            f"ONNX export `{metrics.onnx['path']}`: top-1 agreement with PyTorch on the test split "
            f"{metrics.onnx['top1_agreement']:.4f}.",
            "",
        ]
    return lines


def print_summary(metrics: RunMetrics, run_dir: Path) -> None:
    rows = summary_rows(metrics)
    if not rows:
        return
    table = Table(title=f"distillab · test split · {run_dir}")
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*row.values())
    console = Console(width=140)
    console.print(table)
    if metrics.compression is not None:
        compression = Table(title="compression")
        names = list(metrics.compression)
        columns = [k for k, _ in COLUMNS if k != "name"]
        compression.add_column("model")
        for _, title in COLUMNS[1:]:
            compression.add_column(title, justify="right")
        for name in names:
            row = metrics.compression[name]
            compression.add_row(name, *(format_cell(k, row.get(k)) for k in columns))
        console.print(compression)
