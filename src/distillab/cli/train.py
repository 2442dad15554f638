"""``distillab``: the command line. Hydra composes the config; :func:`pipeline.run` does the work.

    distillab experiment=digits_kd                       # one run
    distillab -m experiment=digits_kd loss.alpha=0.5,0.9 # a sweep; the teacher is trained once
    distillab --help                                     # config groups and options

How a run ends (the README's exit-code table):

====  ===========================================================================================
0     done: metrics.json written
1     a sweep with a failed job; a bug (a traceback)
2     a config error, one line naming the key, before anything trains (also a key or group
      option that is not in the config, with the nearest names, and an override Hydra cannot parse)
3     training stopped: a NaN loss, a damaged checkpoint, a teacher that is not the one a
      checkpoint was distilled from
4     a file could not be written (disk full, no permission)
5     the run's folder is in use: another live process trains this config there (folder.py)
130   interrupted by SIGINT (Ctrl-C); 143: by SIGTERM (a timeout, a SLURM pre-emption). No
      metrics.json; the same command continues the run from its checkpoints (run/fitting.py)
====  ===========================================================================================

Inside a multirun a failing job writes ``failed.json`` in its folder and the others go on; the
sweep's summary table marks it (sweep.py). A signal stops the whole sweep.
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import math
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from hydra._internal import utils as hydra_internal  # its reporter and argument parser (hydra-core 1.3)
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

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


def _in_use_kind() -> type[BaseException]:
    from distillab.run.folder import RunInUse

    return RunInUse


def explain(err: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for the failures a user can act on; None for a bug (traceback)."""
    cause = err
    while cause is not None and not isinstance(cause, (ConfigError, OSError, _in_use_kind(), *_stopped_kinds())):
        cause = cause.__cause__  # a failed stage wraps what went wrong
    where = f"{err}".split(" failed:")[0] + ": " if cause is not err and cause is not None else ""
    if isinstance(cause, ConfigError):
        return 2, f"config error: {where}{cause}"
    if isinstance(cause, _stopped_kinds()):
        return 3, f"training stopped: {where}{cause}"
    if isinstance(cause, _in_use_kind()):
        return 5, f"run in use: {cause}"
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
    from distillab.run.fitting import handling_signals, signal_received  # heavy imports after Hydra has parsed --help

    with handling_signals():
        try:
            return _run_job(cfg)
        except BaseException:  # a signal ends the run whatever it cut short (Lightning's own SystemExit too)
            stop = signal_received()
            if stop is None:
                raise
            print(f"distillab: {stop.message}", file=sys.stderr)
            sys.exit(stop.exit_code)


def _run_job(cfg: DictConfig) -> float | None:
    from distillab.core.distributed import is_distributed
    from distillab.run.fitting import signal_received
    from distillab.run.folder import locked_run_dir
    from distillab.run.pipeline import run

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
        with locked_run_dir(cfg, multirun):  # one process trains in a run's folder at a time
            metrics = run(cfg, list(hydra_cfg.overrides.task), multirun=multirun)
    except Exception as err:  # every failure is reported below; in a sweep the other jobs go on
        if signal_received() is not None:
            raise  # what a signal broke (a DataLoader worker it killed): _main reports the signal
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


# Hydra's composition errors: an unknown key or group option, an override it cannot parse.
# Hydra prints these itself and exits 1, before any code of ours runs; the hook below brings
# them to main(), which names the nearest valid keys or options and exits 2 as for any other
# config error. (docs/errors.md's table runs its rows through composition_error too.)

COMPOSITION_ERRORS = (ConfigCompositionException, OverrideParseException)


class _CompositionFailed(BaseException):
    """Carries a composition error past Hydra's reporter, which catches every Exception."""

    def __init__(self, error: HydraException):
        self.error = error
        super().__init__(str(error))


@contextmanager
def hydra_composition_errors() -> Iterator[None]:
    """While the block runs, a composition error reaches the caller as :class:`_CompositionFailed`;
    every other error goes to Hydra's reporter as before. ``HYDRA_FULL_ERROR=1`` keeps Hydra's."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    report = hydra_internal.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def composing() -> Any:
            try:
                return func()
            except COMPOSITION_ERRORS as err:
                raise _CompositionFailed(err) from err

        return report(composing)

    hydra_internal.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_internal.run_and_report = report


def _one_line(text: str) -> str:
    return " ".join(text.split("\nConfig search path:")[0].split())


def _parsed(override: str) -> Override | None:
    """The override as Hydra parses it, or None."""
    try:
        return OverridesParser.create().parse_override(override)
    except HydraException:
        return None


def _config_keys(overrides: list[str], config_name: str) -> tuple[list[str], list[str]]:
    """(dotted keys, config groups) of the config the overrides compose (those that do; sweeps
    left out), or of the default config if they do not."""
    from hydra import compose, initialize_config_dir

    usable = [o for o in overrides if (parsed := _parsed(o)) is not None and not parsed.is_sweep_override()]
    for attempt in (usable, []):
        try:
            with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
                cfg = compose(config_name, overrides=attempt, return_hydra_config=True)
            break
        except HydraException:
            continue
    else:
        return [], []
    groups = list(OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False))
    return _dotted(OmegaConf.to_container(cfg, resolve=False), ""), groups


def _dotted(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    return [k for key, value in node.items() for k in (f"{prefix}{key}", *_dotted(value, f"{prefix}{key}."))]


def nearest_keys(key: str, keys: list[str]) -> list[str]:
    """The keys a mistyped ``key`` most likely meant: the nearest name beside it (same parent),
    else the nearest full path (a typo in a parent), else the same name under other parents."""
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    if near := difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6):
        return [siblings[near[0]]]
    if near := difflib.get_close_matches(key, keys, n=1, cutoff=0.8):
        return near
    return sorted(k for k in keys if k.rpartition(".")[2] == leaf)[:3]


def _did_you_mean(names: list[str]) -> str:
    return f"; did you mean {' or '.join(names)}?" if names else ""


def composition_error(err: HydraException, overrides: list[str], config_name: str = "train") -> str:
    """One line for a composition error (what follows ``config error: ``), naming the key or
    option given and the nearest valid ones (difflib's matches over the composed config)."""
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, name = err.missing_cfg_file.rpartition("/")
        near = difflib.get_close_matches(name, err.options, n=1, cutoff=0.6)
        inside = re.match(r"In '([^']+)':", str(err))
        where = f" (asked for in {inside[1]})" if inside and inside[1] != config_name else ""
        allowed = f"is not an option of {group}{where}{_did_you_mean(near)} (options: {', '.join(err.options)})"
        return str(ConfigError(group, name, allowed))
    if isinstance(err, OverrideParseException):
        key, _, value = err.override.partition("=")
        detail, _, see = err.message.partition("\nSee ")
        link = f" (see {see.removesuffix(' for details')})" if see else ""
        return str(ConfigError(key, value, f"Hydra cannot parse it: {_one_line(detail)}{link}"))
    unknown = re.match(r"Could not override '([^']+)'", str(err))
    if unknown is None:
        return _one_line(str(err))
    key = unknown[1]
    given = next((o for o in overrides if o.partition("=")[0] == key), f"{key}=")
    parsed = _parsed(given)
    value = parsed.value() if parsed is not None and not parsed.is_sweep_override() else given.partition("=")[2]
    keys, groups = _config_keys([o for o in overrides if o != given], config_name)
    if "/" in key:  # a config group's path (model/student=...)
        return str(ConfigError(key, value, f"is not a config group{_did_you_mean(nearest_keys(key, groups))}"))
    candidates = [k for k in keys if not k.startswith("hydra.") or key.startswith("hydra.")]
    candidates += [g for g in groups if "/" not in g and g not in candidates]
    near = nearest_keys(key, candidates)
    parent = key.rpartition(".")[0]
    beside = sorted(k.rpartition(".")[2] for k in keys if parent and k.rpartition(".")[0] == parent)
    listed = f"; {parent} has {', '.join(beside)}" if beside and not near else ""
    allowed = f"is not in the config{_did_you_mean(near)}{listed} (to add a new key: +{given})"
    return str(ConfigError(key, value, allowed))


def _command_line() -> tuple[list[str], str]:
    """The overrides and config name Hydra reads from this command line."""
    args = hydra_internal.get_args_parser().parse_args(sys.argv[1:])
    return list(args.overrides), args.config_name or "train"


def main() -> None:
    try:
        # Before Hydra composes: it would stop an old key name with "Could not override ..." instead.
        check_renamed_overrides(sys.argv[1:])
        with hydra_composition_errors():
            _main()
    except ConfigError as err:
        print(f"distillab: config error: {err}", file=sys.stderr)
        sys.exit(2)
    except _CompositionFailed as failed:
        print(f"distillab: config error: {composition_error(failed.error, *_command_line())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before the run's own handlers (run/fitting.py) are set
        print("distillab: interrupted by SIGINT during setup; the same command continues it", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
