"""Teacher outputs computed once per input and looked up by the batch's ``index``.

A frozen teacher gives the same outputs for the same inputs, so in offline distillation
its forward on every batch of every epoch repeats work: for a teacher 10-30x the
student's size it is most of an epoch. When a split's inputs do not change between epochs
(no random augmentation), the teacher runs once over the split, in order, and each batch
then reads rows ``index`` of the result. ``index`` is the sample's position in its split,
so the lookup is right under shuffling and under DDP's sampler (every rank sees the whole
split's outputs and reads its own rows).

An entry is found by its key (teachers/cache_key.py), which follows the teachers' weights,
the split's inputs and what was asked: a stale entry is never read; it is simply not found.

Modes (``teacher.cache``):
  off     the teacher runs on every batch
  memory  computed when fitting/testing starts, held for this run only
  disk    computed once and written under ``<teachers_dir>/outputs/<key>/`` as safetensors
          shards of ``shard_rows`` rows with a SHA-256 manifest (teachers/shards.py; a damaged
          entry, or a file in its place, is removed and rebuilt), then memory-mapped: every
          later run against the same teacher and data (a whole sweep of students) skips the
          teacher entirely. ``stage=capture`` writes the same entries ahead of training.
  auto    disk; training batches whose inputs are augmented go to the live teacher, and
          the log says so

Outputs that would exceed ``budget_mb`` (hidden states and attentions of a big teacher
over a big split) are not cached: that split's batches go to the live teacher, said once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from torch import Tensor

from distillab.core.config import check_choice, check_int, check_number
from distillab.core.entries import file_lock, verify_entry
from distillab.models.output import ModelOutput
from distillab.teachers.cache_key import SplitRequest, cache_key, data_fingerprint, weights_fingerprint
from distillab.teachers.capture import capture_shards, compute_shard, finish_entry, request_summary
from distillab.teachers.ensemble import Teachers
from distillab.teachers.flat_outputs import cut_positions, flatten, unflatten
from distillab.teachers.shards import ShardedOutputs, shard_ranges
from distillab.teachers.store import remove_entry

__all__ = [
    "MODES",
    "SplitRequest",
    "TeacherOutputCache",
    "data_fingerprint",
    "flatten",
    "unflatten",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)

MODES = ("auto", "off", "memory", "disk")


class TeacherOutputCache:
    """Teacher outputs per split, built on first use and looked up by ``index``."""

    def __init__(
        self, mode: str = "auto", root: str | Path | None = None, budget_mb: float = 2048.0, shard_rows: int = 1024
    ):
        self.mode = check_choice("cache", mode, MODES)
        if self.mode in ("auto", "disk") and root is None:
            raise ValueError("teacher.cache=disk/auto needs a folder (paths.teachers_dir)")
        self.root = Path(root) / "outputs" if root is not None else None
        self.budget_bytes = check_number("cache_budget_mb", budget_mb, low=0) * 2**20
        self.shard_rows = check_int("cache.shard_rows", shard_rows, low=1)
        self._entries: dict[str, ShardedOutputs] = {}  # key -> its shards
        self._split_keys: dict[str, str | None] = {}  # split -> key of the entry it reads
        self.built: list[str] = []  # keys computed by this process (for reports and tests)
        self.build_seconds: dict[str, float] = {}  # key -> seconds the teacher took to fill it
        self.dense_bytes: dict[str, int] = {}  # key -> what its logits would take kept dense
        self.topk_samples: dict[str, int] = {}  # key -> how many of its top-k slots are sampled

    def key(self, teachers: Teachers, request: SplitRequest) -> str:
        return cache_key(teachers, request, self.shard_rows)

    def prepare(self, teachers: Teachers, request: SplitRequest) -> None:
        """Make ``request.split`` answer from the cache, or decide (and say) that it cannot."""
        self._split_keys[request.split] = None
        if self.mode == "off":
            return
        if request.inputs_vary:
            log.info(
                "teacher.cache=%s: the %s inputs are augmented (new every epoch), so the teacher runs on "
                "every %s batch",
                self.mode,
                request.split,
                request.split,
            )
            return
        key = self.key(teachers, request)
        self.topk_samples[key] = request.topk_samples if request.topk is not None else 0
        if key not in self._entries:
            outputs = self._load_or_build(teachers, request, key)
            if outputs is None:
                return
            self._entries[key] = outputs
        self._split_keys[request.split] = key

    def sizes(self) -> dict[str, dict[str, Any]]:
        """Per cached split: bytes held (on disk for disk/auto), what dense logits would take,
        and the build time (None: reused from an earlier run)."""
        out = {}
        for split, key in self._split_keys.items():
            if key is None:
                continue
            entry = self._entries[key]
            topk = [entry.row_shape(name)[-1] for name in entry.names if name.endswith(".topk.indices")]
            out[split] = {
                "bytes": entry.nbytes,
                "shards": len(entry.shards),
                "dense_logits_bytes": self.dense_bytes.get(key),
                "build_seconds": self.build_seconds.get(key),
                "topk": int(topk[0]) if topk else None,
                "samples": self.topk_samples.get(key, 0),
            }
        return out

    def lookup(self, split: str, index: Tensor, seq_len: int | None = None) -> ModelOutput | list[ModelOutput] | None:
        """The cached outputs of samples ``index`` of ``split``, on ``index``'s device; None if not cached.

        Entries hold every token position; ``seq_len`` cuts hidden states and attention maps
        to a batch cut to its longest sequence (dynamic padding).
        """
        key = self._split_keys.get(split)
        if key is None:
            return None
        rows = self._entries[key].rows(index)
        return unflatten({k: cut_positions(k, v, seq_len).to(index.device) for k, v in rows.items()})

    def cached(self, split: str) -> bool:
        return self._split_keys.get(split) is not None

    def summary(self) -> dict[str, Any]:
        """For metrics.json: the mode, which splits were served from the cache, and how many
        entries this run computed (0 when a previous run's were reused)."""
        return {
            "mode": self.mode,
            "cached_splits": sorted(s for s in self._split_keys if self.cached(s)),
            "live_splits": sorted(s for s in self._split_keys if not self.cached(s)),
            "computed_here": len(self.built),
            "splits": self.sizes(),
        }

    # -- building -------------------------------------------------------------------------

    def _load_or_build(self, teachers: Teachers, request: SplitRequest, key: str) -> ShardedOutputs | None:
        if self.mode == "memory":
            return self._compute_in_memory(teachers, request, key)
        assert self.root is not None
        entry = self.root / key
        with file_lock(self.root / f"{key}.lock"):
            if entry.exists() or entry.is_symlink():
                problem = verify_entry(entry) if entry.is_dir() else "not a folder (a file is in its place)"
                if problem is None:
                    log.info("teacher outputs for %s: reusing %s", request.split, entry)
                    return ShardedOutputs.open(entry)
                log.warning("cached teacher outputs %s are %s; removing them and computing them again", entry, problem)
                remove_entry(entry)
            progress = capture_shards(
                teachers, request, key, self.root, self.shard_rows, budget_bytes=self.budget_bytes
            )
            if progress is None:
                self._over_budget(request)
                return None
            self._record(key, request, progress.seconds, progress.dense_bytes)
            finish_entry(
                self.root,
                key,
                request,
                self.shard_rows,
                **request_summary(request),
                build_seconds=progress.seconds,
                dense_logits_bytes=progress.dense_bytes,
            )
            log.info("teacher outputs for %s written to %s", request.split, entry)
        return ShardedOutputs.open(entry)

    def _compute_in_memory(self, teachers: Teachers, request: SplitRequest, key: str) -> ShardedOutputs | None:
        started, shards = time.perf_counter(), []
        for number in range(len(shard_ranges(len(request.dataset), self.shard_rows))):
            shard = compute_shard(teachers, request, key, number, self.shard_rows)
            if not shards and shard.split_bytes(len(request.dataset)) > self.budget_bytes:
                self._over_budget(request)
                return None
            shards.append(shard)
        self._record(key, request, round(time.perf_counter() - started, 2), sum(s.dense_bytes for s in shards))
        return ShardedOutputs.in_memory([(s.start, s.tensors) for s in shards])

    def _over_budget(self, request: SplitRequest) -> None:
        log.warning(
            "teacher outputs for %s would take more than teacher.cache_budget_mb=%g; the teacher runs on every %s batch",
            request.split,
            self.budget_bytes / 2**20,
            request.split,
        )

    def _record(self, key: str, request: SplitRequest, seconds: float, dense_bytes: int) -> None:
        self.built.append(key)
        self.build_seconds[key] = seconds
        self.dense_bytes[key] = dense_bytes
        log.info("teacher outputs for %s computed once: %d samples", request.split, len(request.dataset))
