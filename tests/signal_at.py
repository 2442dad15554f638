"""A Lightning callback for the signal tests: the run sends itself a signal at a chosen point
(a model's training or its test pass), so that each stage is hit exactly, not by timing.

The same callback config is in every run of the command (a rerun continues the same config):
``plan`` lists the signals to send, in order, as ``role:stage:SIGNAL`` (stage ``fit``: the first
batch of the second epoch, once the first epoch's checkpoint is written; ``test``: the first test
batch; ``capture``: stage=capture's third shard, once two are written); ``state`` is a file that counts those already sent, so each process sends the next one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class SignalAt(L.Callback):
    def __init__(self, plan: list[str], state: str, dirpath: str | None = None):
        self.plan = [tuple(step.split(":")) for step in plan]
        self.state = Path(state)
        self.role = Path(dirpath).name if dirpath else None  # the pipeline's checkpoints/<role>

    def _maybe_send(self, stage: str) -> None:
        sent = len(self.state.read_text().splitlines()) if self.state.exists() else 0
        if sent >= len(self.plan):
            return
        role, when, name = self.plan[sent]
        if (role, when) == (self.role, stage):
            with self.state.open("a") as f:
                f.write(f"{role}:{when}:{name}\n")
            os.kill(os.getpid(), signal.Signals[name])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 0:
            self._maybe_send("fit")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self._maybe_send("test")

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 2:
            self._maybe_send("capture")
