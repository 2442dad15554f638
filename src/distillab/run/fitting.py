"""Lightning Trainers built from config, for one training stage (teacher, student, baseline)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from distillab.callbacks import StepTimer
from distillab.core.checkpoints import HashedCheckpointIO, resumable
from distillab.core.config import build
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.modules.classifier import ClassifierModule
from distillab.run.tracking import role_loggers

log = logging.getLogger(__name__)


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
    trainer.fit(module, datamodule=datamodule, ckpt_path=last)
    if throughput is not None:
        throughput[role] = timer.summary()
    checkpoint = trainer.checkpoint_callback
    if val is not None and checkpoint is not None and checkpoint.best_model_score is not None:
        val[role] = float(checkpoint.best_model_score)
    best = checkpoint.best_model_path if checkpoint and test_best else ""
    return _test_metrics(trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False))


def test_only(module: ClassifierModule, cfg: DictConfig, datamodule: TensorDataModule) -> dict[str, float]:
    trainer = build(cfg.trainer, "trainer", logger=False, enable_checkpointing=False, callbacks=[])
    return _test_metrics(trainer.test(module, datamodule=datamodule, verbose=False))
