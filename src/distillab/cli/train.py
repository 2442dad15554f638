"""``distillab``: the command line. Hydra composes the config; :func:`pipeline.run` does the work.

    distillab experiment=digits_kd                       # one run
    distillab -m experiment=digits_kd loss.alpha=0.5,0.9 # a sweep; the teacher is trained once
    distillab --help                                     # config groups and options

How a run ends: exit 0 with metrics.json; 2 for a config error (one line naming the key,
before anything trains); 3 when training stopped (a NaN loss, a damaged checkpoint, a
teacher that is not the one a checkpoint was distilled from); 4 when a file could not be
written (disk full, no permission). Inside a multirun a failing job writes ``failed.json``
in its folder and the others go on; the sweep's summary table marks it (sweep.py).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import sys
import traceback
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from distillab.core.config import ConfigError
from distillab.core.renamed_keys import check_overrides as check_renamed_overrides

# A deprecation inside Lightning's own code, printed on every run; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

# The configs ship inside the package, so an installed distillab finds them wherever it runs.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger("distillab")


def _stopped_kinds() -> tuple[type[BaseException], ...]:
    from distillab.core.checkpoints import CorruptCheckpointError
    from distillab.modules.classifier import NonFiniteLossError
    from distillab.modules.distiller import TeacherMismatchError

    return CorruptCheckpointError, NonFiniteLossError, TeacherMismatchError


def explain(err: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for the failures a user can act on; None for a bug (traceback)."""
    cause = err
    while cause is not None and not isinstance(cause, (ConfigError, OSError, *_stopped_kinds())):
        cause = cause.__cause__  # a failed stage wraps what went wrong
    where = f"{err}".split(" failed:")[0] + ": " if cause is not err and cause is not None else ""
    if isinstance(cause, ConfigError):
        return 2, f"config error: {where}{cause}"
    if isinstance(cause, _stopped_kinds()):
        return 3, f"training stopped: {where}{cause}"
    if isinstance(cause, OSError) and cause.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
    ):
        target = cause.filename or "a file"
        return 4, (
            f"could not write {target}: {cause.strerror}. Free some space (or fix the permission), or point "
            "paths.log_dir / paths.teachers_dir elsewhere; run the same command again to continue from the "
            "last checkpoint"
        )
    return None


def _job_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _record_failure(err: BaseException, message: str | None) -> None:
    """``failed.json`` in the job's folder: what the sweep summary and distillab-summarize show."""
    try:
        (_job_dir() / "failed.json").write_text(
            json.dumps(
                {
                    "error": type(err).__name__,
                    "message": message or str(err),
                    "traceback": traceback.format_exception(type(err), err, err.__traceback__)[-6:],
                },
                indent=2,
            )
            + "\n"
        )
    except OSError:
        pass  # the folder itself may be what cannot be written


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from distillab.core.distributed import is_distributed
    from distillab.run.pipeline import run  # heavy imports after Hydra has parsed --help

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if multirun and is_distributed(cfg) and "SLURM_JOB_ID" not in os.environ and "LOCAL_RANK" not in os.environ:
            raise ConfigError(
                "trainer.strategy",
                cfg.trainer.get("strategy"),
                "starts its other processes by running "
                "the command again, which a local multirun cannot do: run one command per run, or the "
                "sweep with hydra/launcher=slurm (SLURM starts the processes)",
            )
        metrics = run(cfg, list(hydra_cfg.overrides.task), multirun=multirun)
    except Exception as err:  # every failure is reported below; in a sweep the other jobs go on
        known = explain(err)
        _record_failure(err, known[1] if known else None)
        if multirun:  # the other jobs go on; the sweep's summary marks this one failed
            if known:
                log.error("job failed: %s", known[1])
            else:
                log.exception("job failed")
            return math.nan
        if known is None:
            raise
        print(f"distillab: {known[1]}", file=sys.stderr)
        sys.exit(known[0])
    return metrics.objective


def main() -> None:
    # Before Hydra composes: it would stop an old key name with "Could not override ..." instead.
    try:
        check_renamed_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"distillab: config error: {err}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
