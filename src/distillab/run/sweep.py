"""The end of a multirun: one table of its jobs (done, continued, reused, failed), and exit
code 1 when a job failed, so that a script or a scheduler notices. Registered as a Hydra
callback in conf/train.yaml (``hydra.callbacks.sweep_summary``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from distillab.run.metrics import RunMetrics


def job_status(job_dir: Path) -> dict[str, Any]:
    """What one job of a sweep folder did, from the files it left."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides or [])}
    if (job_dir / "failed.json").is_file():
        failure = json.loads((job_dir / "failed.json").read_text())
        return {**row, "status": "failed", "detail": failure["message"].splitlines()[0][:100]}
    if not (job_dir / "metrics.json").is_file():
        return {**row, "status": "unfinished", "detail": "no metrics.json (killed?): run the command again"}
    metrics = RunMetrics.read(job_dir / "metrics.json")
    status = "reused" if metrics.reused_from is not None else "continued" if metrics.resumed_in is not None else "done"
    final = metrics.student or metrics.baseline or metrics.teacher or {}
    acc = final.get("test", {}).get("acc")
    objective = metrics.objective
    detail = ", ".join(
        part
        for part in (
            f"test acc {acc:.4f}" if acc is not None else "",
            f"best val acc {objective:.4f}" if objective is not None else "",
        )
        if part
    )
    return {**row, "status": status, "detail": detail}


def sweep_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()] if sweep_dir.is_dir() else []
    rows = [
        job_status(p)
        for p in sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    ]
    # Only what tells the jobs apart: overrides every job shares are dropped.
    shared = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    return [{**r, "overrides": " ".join(o for o in r["overrides"].split() if o not in shared)} for r in rows]


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = sweep_jobs(sweep_dir)
        if not rows:
            return
        table = Table(title=f"distillab · sweep · {sweep_dir}")
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            style = {"failed": "red", "unfinished": "yellow"}.get(row["status"])
            table.add_row(*(str(v) for v in row.values()), style=style)
        Console(width=160).print(table)
        failed = [r for r in rows if r["status"] in ("failed", "unfinished")]
        if failed:
            print(
                f"distillab: {len(failed)} of {len(rows)} jobs did not finish (see failed.json in their folders); "
                "run the same command again to retry them: finished jobs are skipped",
                file=sys.stderr,
            )
            sys.exit(1)
