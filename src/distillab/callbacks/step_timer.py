"""Training throughput for the report: the time of the training steps alone and the items
(tokens, or samples for a classifier) they processed, per epoch.

Lightning's ``ThroughputMonitor`` logs rates to a logger while training; the report needs
the figures back after ``fit`` (and for runs with no logger), with validation, checkpointing
and the teacher cache's build kept out of them, so that a KD epoch and a student-alone epoch
are compared on the steps they both take.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []  # per epoch
        self.items: list[int] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds.append(0.0)
        self.items.append(0)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seconds[-1] += time.perf_counter() - self._start
        self.items[-1] += batch["labels"].numel()

    def summary(self) -> dict[str, Any]:
        """Seconds per epoch and items/s over the epochs this process trained (a resumed run:
        those since it resumed)."""
        total = sum(self.seconds)
        return {
            "epoch_seconds": [round(s, 2) for s in self.seconds],
            "items_per_s": round(sum(self.items) / total, 1) if total else None,
        }
