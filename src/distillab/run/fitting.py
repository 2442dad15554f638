"""Lightning Trainers built from config, for one training stage (teacher, student, baseline),
and what a signal (SIGTERM, SIGINT) does to them.

Signals: a run stopped by SIGTERM (a timeout, a SLURM pre-emption) or SIGINT (Ctrl-C) must
never look finished. :func:`handling_signals` (the CLI's) records the first signal and what
the run was doing; a stage that a signal reached never counts as done (:func:`doing` raises
:class:`Interrupted` when it ends), so no test metrics, teacher-store entry or metrics.json is
written for a model whose training was cut short, and the checkpoints stay for the same
command to continue from. Inside a Lightning call a SIGTERM goes to Lightning's own handler
first, which stops at the next batch boundary (its ``SIGTERMException``, a ``SystemExit``), so
a checkpoint being written is finished first. A SIGINT, and a SIGTERM anywhere else, raises at
once (Lightning shuts a Trainer down as on Ctrl-C), except inside :func:`holding_signals` (a
teacher-store entry, metrics.json), which completes first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import lightning as L
from omegaconf import DictConfig

from distillab.callbacks import StepTimer
from distillab.core.checkpoints import HashedCheckpointIO, resumable
from distillab.core.config import build
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.modules.classifier import ClassifierModule
from distillab.run.tracking import role_loggers

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run. A KeyboardInterrupt (so a BaseException): no ``except
    Exception`` on the way up (a sweep's failed-job handler, a stage's wrapper) swallows it, and
    Lightning shuts a running Trainer down as it does on Ctrl-C."""

    def __init__(self, stop: Stop):
        self.stop = stop
        super().__init__(stop.message)


@dataclass(frozen=True)
class Stop:
    """The first signal the run received and what it was doing then ("during student training")."""

    signum: int
    during: str

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    @property
    def message(self) -> str:
        return f"interrupted by {self.name} {self.during}; the same command continues it"


@dataclass
class _Signals:
    activity: str = "during setup"
    received: Stop | None = None
    held: int = 0  # depth of holding_signals() blocks


_SIGNALS = _Signals()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _SIGNALS.received is None:
        _SIGNALS.received = Stop(signum, _SIGNALS.activity)
    if _SIGNALS.held:
        return  # the block completes, then whoever holds it checks
    if signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is not _on_signal:
        return  # Lightning's handler called this one: its loop stops at the next batch boundary
    raise Interrupted(_SIGNALS.received)


@contextmanager
def handling_signals() -> Iterator[None]:
    """SIGTERM and SIGINT recorded and turned into :class:`Interrupted` while the block runs
    (a run); the handlers before it come back after. Python lets only the main thread set
    handlers: a run in another thread (a launcher's) keeps the process's."""
    global _SIGNALS
    _SIGNALS = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def signal_received() -> Stop | None:
    """The first signal since :func:`handling_signals` began, or None."""
    return _SIGNALS.received


def raise_if_signalled() -> None:
    if _SIGNALS.received is not None:
        raise Interrupted(_SIGNALS.received)


@contextmanager
def holding_signals() -> Iterator[None]:
    """A signal that arrives inside waits for the block to end (a file written whole)."""
    _SIGNALS.held += 1
    try:
        yield
    finally:
        _SIGNALS.held -= 1


@contextmanager
def doing(activity: str) -> Iterator[None]:
    """Name what the run does (for the interruption's message); a signal that arrived meanwhile
    stops the run when the block ends, even if Lightning let it finish (a SIGTERM during the
    last batch), so its result is never used."""
    _SIGNALS.activity = f"during {activity}"
    try:
        yield
    finally:
        _SIGNALS.activity = f"after {activity}"
    raise_if_signalled()


def _test_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    return {
        k.removeprefix("test/"): float(v) for k, v in results[0].items() if k.startswith("test/") and k != "test/loss"
    }


def fit_and_test(
    module: ClassifierModule,
    role: str,
    cfg: DictConfig,
    datamodule: TensorDataModule,
    max_epochs: int,
    seed: int,
    extra_callbacks: Sequence[L.Callback] = (),
    test_best: bool = True,
    val: dict[str, float] | None = None,
    throughput: dict[str, dict] | None = None,
) -> dict[str, float]:
    """Train ``module`` with the configured Trainer, callbacks and logger; test its best
    checkpoint (or, with ``test_best=False``, the weights training ended with: under gradual
    pruning the best validation score comes from an early, denser model). ``val[role]``
    receives the best validation score (what a hyper-parameter search optimises);
    ``throughput[role]`` the training steps' seconds per epoch and items (tokens) per second.

    Checkpoints go to ``<run dir>/checkpoints/<role>/``; each logger of ``cfg.logger`` tracks the
    model as its own run (TensorBoard under ``tensorboard/<role>/``; run/tracking.py).
    When ``checkpoints/<role>/last.ckpt`` is there already (a run resumed in its own folder),
    training continues from it: weights, optimizer, scheduler, epoch, pruning masks, RNG.
    """
    run_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = run_dir / "checkpoints" / role
    L.seed_everything(seed, workers=True, verbose=False)
    callbacks = [
        build(node, f"callbacks.{name}", **({"dirpath": str(checkpoint_dir)} if "dirpath" in node else {}))
        for name, node in (cfg.get("callbacks") or {}).items()
    ] + list(extra_callbacks)
    timer = StepTimer()
    callbacks.append(timer)
    loggers = role_loggers(cfg, role)  # this model's own tracked run in each logger (run/tracking.py)
    trainer = build(
        cfg.trainer,
        "trainer",
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[HashedCheckpointIO()],
    )
    last = resumable(checkpoint_dir)
    if last is not None:
        log.info("resuming %s from %s", role, last)
    else:
        log.info("training %s for %d epochs", role, max_epochs)
    with doing(f"{role} training"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=last)
    if throughput is not None:
        throughput[role] = timer.summary()
    checkpoint = trainer.checkpoint_callback
    if val is not None and checkpoint is not None and checkpoint.best_model_score is not None:
        val[role] = float(checkpoint.best_model_score)
    best = checkpoint.best_model_path if checkpoint and test_best else ""
    with doing(f"the {role}'s test pass"):
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    return _test_metrics(results)


def test_only(module: ClassifierModule, cfg: DictConfig, datamodule: TensorDataModule) -> dict[str, float]:
    trainer = build(cfg.trainer, "trainer", logger=False, enable_checkpointing=False, callbacks=[])
    with doing("a test pass"):
        results = trainer.test(module, datamodule=datamodule, verbose=False)
    return _test_metrics(results)
