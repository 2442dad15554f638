"""The run's folder: opened (a fresh run's own, or the interrupted run's it continues), its
config saved and indexed, and at the end its results written. Only rank 0 writes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import check_writable
from distillab.run.metrics import RunMetrics
from distillab.run.report import print_summary, write_report
from distillab.run.resume import Resume, copy_results, register


def reuse_finished(run_dir: Path, job_dir: Path, rank0: bool) -> RunMetrics:
    """A sweep job whose config finished in ``run_dir``: its results copied into ``job_dir``."""
    if not rank0:
        return RunMetrics.read(run_dir / "metrics.json")
    metrics = copy_results(run_dir, job_dir, {"reused_from": str(run_dir)})
    print_summary(metrics, run_dir)
    return metrics


def open_run_dir(cfg: DictConfig, resume: Resume, rank0: bool) -> Path:
    """The folder the run works in (``paths.output_dir`` points there from now on), checked
    writable, with the resolved config saved; a fresh run is indexed as its config's latest."""
    if resume.action == "continue":
        cfg.paths.output_dir = str(resume.run_dir)
    run_dir = Path(cfg.paths.output_dir)
    check_writable("paths.output_dir", run_dir)
    check_writable("paths.teachers_dir", Path(cfg.paths.teachers_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank0:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        if resume.action == "fresh":
            register(cfg, run_dir)
    return run_dir


def finish(metrics: RunMetrics, run_dir: Path, job_dir: Path, overrides: list[str], rank0: bool) -> None:
    """metrics.json and report.md in the run's folder (and copied into this command's folder
    when the run continued another's), then the summary table on the console."""
    if not rank0:
        return
    write_report(metrics, run_dir, overrides)
    if run_dir != job_dir:
        copy_results(run_dir, job_dir, {"resumed_in": str(run_dir)})
    print_summary(metrics, run_dir)
