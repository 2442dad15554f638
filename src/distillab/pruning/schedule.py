"""Gradual magnitude pruning during training, Zhu & Gupta 2017, "To prune, or not to prune:
exploring the efficacy of pruning for model compression".

Sparsity rises from s_i to s_f along a cubic: fast at first, while many weights are
redundant, then slowly, so the network can recover between pruning steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import nn

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.pruning.magnitude import (
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    magnitude_prune,
    make_permanent,
    measured_sparsity,
    prunable_weights,
)

log = logging.getLogger(__name__)


def check_schedule(initial: float, final: float, start_step: int, end_step: int) -> None:
    """ConfigErrors for a schedule that cannot be run: 0 <= s_i <= s_f < 1, t0 >= 0, end > t0."""
    final = check_number("final_sparsity", final, low=0, high=1, high_open=True)
    check_number("initial_sparsity", initial, low=0, high=final)
    start_step = check_int("start_step", start_step, low=0)
    if isinstance(end_step, bool) or not isinstance(end_step, int) or end_step <= start_step:
        raise ConfigError("end_step", end_step, f"must be an integer > start_step={start_step}")


def cubic_sparsity(step: int, initial: float, final: float, start_step: int, end_step: int) -> float:
    """Target sparsity at optimizer step t (Zhu & Gupta 2017, eq. 1):

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n Δt))^3,   t0 <= t <= t0 + n Δt

    with ``end_step`` = t0 + n Δt; s_i before t0 and s_f after the end.
    """
    if step <= start_step:
        return initial
    if step >= end_step:
        return final
    return final + (initial - final) * (1 - (step - start_step) / (end_step - start_step)) ** 3


class GradualPruning(L.Callback):
    """Prunes the student (``pl_module.model``) to :func:`cubic_sparsity` during training.

    Every ``frequency`` optimizer steps from ``start_step`` to ``end_step`` (and at
    ``end_step`` itself, so the final target is always reached), after the optimizer step,
    the prunable weights are brought to the scheduled total sparsity by magnitude. Logs
    ``pruning/sparsity`` (measured zeros) and ``pruning/target``; ``history`` keeps
    ``(step, target, measured)`` for every pruning step.

    Masks stay in place at the end of training, so a checkpoint can resume; call
    :meth:`finalize` on the model before export.
    """

    def __init__(
        self,
        final_sparsity: float,
        end_step: int,
        initial_sparsity: float = 0.0,
        start_step: int = 0,
        frequency: int = 1,
        scope: str = "global",
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
    ):
        check_schedule(initial_sparsity, final_sparsity, start_step, end_step)
        self.final_sparsity, self.initial_sparsity = float(final_sparsity), float(initial_sparsity)
        self.start_step, self.end_step = start_step, end_step
        self.frequency = check_int("frequency", frequency, low=1)
        self.scope = check_choice("scope", scope, ("global", "layer"))
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.history: list[tuple[int, float, float]] = []
        self._last_step: int | None = None

    def target(self, step: int) -> float:
        return cubic_sparsity(step, self.initial_sparsity, self.final_sparsity, self.start_step, self.end_step)

    def _due(self, step: int) -> bool:
        # With gradient accumulation global_step repeats over several batches: prune once.
        if step == self._last_step or not self.start_step <= step <= self.end_step:
            return False
        return (step - self.start_step) % self.frequency == 0 or step == self.end_step

    def _params(self, pl_module: L.LightningModule) -> list[tuple[nn.Module, str]]:
        params = prunable_weights(pl_module.model, self.include, self.exclude)
        if not params:
            raise ConfigError(
                "include",
                list(self.include),
                f"matches no Linear weight of the student (excluding {list(self.exclude)})",
            )
        return params

    def _prune(self, step: int, pl_module: L.LightningModule) -> float:
        params = self._params(pl_module)
        target = self.target(step)
        magnitude_prune(params, target, self.scope)
        measured = measured_sparsity(params)
        self.history.append((step, target, measured))
        self._last_step = step
        return measured

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._params(pl_module)  # fail before training, not at the first pruning step
        total = trainer.estimated_stepping_batches
        if total < self.end_step:
            log.warning(
                "pruning end_step=%d is after the last optimizer step (%s): the final sparsity "
                "%.2f will not be reached",
                self.end_step,
                total,
                self.final_sparsity,
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # s_i applies from t0; when t0 is the first step, no batch end comes before it.
        if self._due(trainer.global_step) and trainer.global_step == self.start_step:
            self._prune(trainer.global_step, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # optimizer steps taken, this batch's included
        if not self._due(step):
            return
        measured = self._prune(step, pl_module)
        # batch_size given so Lightning does not try to infer it from the dict batch.
        pl_module.log("pruning/sparsity", measured, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("pruning/target", self.target(step), on_step=True, on_epoch=False, batch_size=1)

    def state_dict(self) -> dict[str, Any]:  # saved in checkpoints, so a resumed run continues the schedule
        return {"history": self.history, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [tuple(h) for h in state_dict["history"]]
        self._last_step = state_dict["last_step"]

    def finalize(self, model: nn.Module) -> list[str]:
        """Make the masks permanent (plain weights with zeros) before saving or export."""
        return make_permanent(model)
