"""What each step of a run adds as it goes: its wall time, and each training's best validation
score and throughput by role (``metrics.json``'s ``seconds``, ``val`` and ``throughput``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from distillab.run.metrics import RunMetrics, Throughput


@dataclass
class Tally:
    seconds: dict[str, float]
    val: dict[str, float]
    throughput: dict[str, Throughput]

    @classmethod
    def of(cls, metrics: RunMetrics) -> Tally:
        """Filling the run's own ``seconds``, ``val`` and ``throughput``."""
        return cls(metrics.seconds, metrics.val, metrics.throughput)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """``seconds[step]``: the block's wall time, to 10 ms (nothing when it raises)."""
        started = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - started, 2)
