"""The run's folder: locked while a process trains in it, opened (a fresh run's own, or the
interrupted run's it continues), its config saved and indexed, and at the end its results
written. Only rank 0 writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, check_writable
from distillab.core.distributed import global_rank
from distillab.run.fitting import holding_signals
from distillab.run.metrics import RunMetrics
from distillab.run.report import print_summary, write_report
from distillab.run.resume import Resume, copy_results, plan_resume, register

LOCK = ".run.lock"  # in the run's folder, held by the process training there


class RunInUse(RuntimeError):
    """Another live process trains in the folder this run would work in (the same config,
    started earlier, which this command would otherwise continue alongside it)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        super().__init__(
            f"{run_dir} is being trained by another distillab process (the same config, started "
            "earlier): let it finish, or stop it (this command then continues it), or start a "
            "separate run with ckpt_path=null"
        )


@contextmanager
def locked_run_dir(cfg: DictConfig, multirun: bool) -> Iterator[None]:
    """Hold the lock of the folder this run will train in (its own, or the interrupted run's it
    continues: resume.py) while the block runs; :class:`RunInUse` if a live process holds it.

    The lock is the system's (flock through ``filelock``), so a process that dies, even by
    SIGKILL, releases it, and the same command then continues the run. A fresh run with
    ``ckpt_path=auto`` also stops if the last run of its config is still training (before its
    first checkpoint, which would make this one continue it). A folder that cannot be written
    is left unlocked: open_run_dir names it as a config error.
    """
    resume = plan_resume(cfg, multirun)
    if resume.action == "skip" or global_rank() != 0:  # nothing trains there / rank 0 locks for all
        yield
        return
    if resume.action == "fresh" and cfg.get("ckpt_path", "auto") == "auto":
        earlier = _unfinished_run(cfg, multirun)
        if earlier is not None and _in_use(earlier):
            raise RunInUse(earlier)
    run_dir = Path(resume.run_dir if resume.action == "continue" else cfg.paths.output_dir)
    lock = FileLock(run_dir / LOCK, timeout=0)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise RunInUse(run_dir) from None
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _unfinished_run(cfg: DictConfig, multirun: bool) -> Path | None:
    """The folder where this config last ran, if that run has not finished (with or without
    checkpoints: what ``ckpt_path=last`` would continue)."""
    try:
        resume = plan_resume(OmegaConf.merge(cfg, {"ckpt_path": "last"}), multirun)
    except ConfigError:  # no earlier run of this config
        return None
    return resume.run_dir if resume.action == "continue" else None


def _in_use(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock."""
    probe = FileLock(run_dir / LOCK, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


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
    check_writable("paths.log_dir", Path(cfg.paths.log_dir))  # the run is indexed under it (resume.py)
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
    with holding_signals():  # never a half-written metrics.json: a signal waits for the results
        write_report(metrics, run_dir, overrides)
        if run_dir != job_dir:
            copy_results(run_dir, job_dir, {"resumed_in": str(run_dir)})
    print_summary(metrics, run_dir)
