"""The run's report: ``metrics.json``, ``report.md`` and the end-of-run console table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROLES = ("teacher", "student", "baseline")


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """One row per role that ran: params, accuracy, F1, agreement, retention of teacher accuracy."""
    teacher_acc = metrics.get("teacher", {}).get("test", {}).get("acc")
    rows = []
    for role in ROLES:
        if role not in metrics:
            continue
        entry, test = metrics[role], metrics[role]["test"]
        retention = test["acc"] / teacher_acc if teacher_acc else None
        rows.append(
            {
                "model": role,
                "params": f"{entry['params']:,}",
                "acc": f"{test['acc']:.4f}",
                "f1": f"{test['f1']:.4f}",
                "agreement": f"{test['agreement']:.4f}" if "agreement" in test else "-",
                "retention": f"{retention:.3f}" if retention is not None else "-",
            }
        )
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], run_dir: Path, overrides: list[str]) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    command = "distillab " + " ".join(overrides)
    lines = [
        "# distillab run",
        "",
        f"Command: `{command.strip()}`  ",
        f"Stage: `{metrics['stage']}`, seed {metrics['seed']}, git {metrics.get('git_commit') or 'unknown'}",
        "",
        "Test split:",
        "",
        markdown_table(summary_rows(metrics)),
        "",
        "Retention is test accuracy relative to the teacher's. The resolved config is "
        "`config.yaml`; all numbers are in `metrics.json`.",
        "",
    ]
    (run_dir / "report.md").write_text("\n".join(lines))


def print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    rows = summary_rows(metrics)
    if not rows:
        return
    table = Table(title=f"distillab · test split · {run_dir}")
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*row.values())
    Console(width=120).print(table)
