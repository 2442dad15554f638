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
  disk    computed once and written under ``<teachers_dir>/outputs/<key>/`` (with a SHA-256
          manifest; a damaged entry, or a file in its place, is removed and rebuilt), then
          memory-mapped: every later run against the same teacher and data (a whole sweep of
          students) skips the teacher entirely
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

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from distillab.core.config import check_choice, check_number
from distillab.core.entries import atomic_entry, file_lock, verify_entry
from distillab.models.output import ModelOutput
from distillab.teachers.cache_key import SplitRequest, cache_key, data_fingerprint, weights_fingerprint
from distillab.teachers.ensemble import Teachers
from distillab.teachers.flat_outputs import cut_positions, flatten, to_topk, unflatten
from distillab.teachers.store import remove_entry

__all__ = [
    "MODES",
    "OUTPUTS",
    "SplitRequest",
    "TeacherOutputCache",
    "data_fingerprint",
    "flatten",
    "unflatten",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)

MODES = ("auto", "off", "memory", "disk")
OUTPUTS = "outputs.pt"


class TeacherOutputCache:
    """Teacher outputs per split, built on first use and looked up by ``index``."""

    def __init__(self, mode: str = "auto", root: str | Path | None = None, budget_mb: float = 2048.0):
        self.mode = check_choice("cache", mode, MODES)
        if self.mode in ("auto", "disk") and root is None:
            raise ValueError("teacher.cache=disk/auto needs a folder (paths.teachers_dir)")
        self.root = Path(root) / "outputs" if root is not None else None
        self.budget_bytes = check_number("cache_budget_mb", budget_mb, low=0) * 2**20
        self._entries: dict[str, dict[str, Tensor]] = {}  # key -> flat outputs
        self._split_keys: dict[str, str | None] = {}  # split -> key of the entry it reads
        self.built: list[str] = []  # keys computed by this process (for reports and tests)
        self.build_seconds: dict[str, float] = {}  # key -> seconds the teacher took to fill it
        self.dense_bytes: dict[str, int] = {}  # key -> what its logits would take kept dense
        self.topk_samples: dict[str, int] = {}  # key -> how many of its top-k slots are sampled

    def key(self, teachers: Teachers, request: SplitRequest) -> str:
        return cache_key(teachers, request)

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
            out[split] = {
                "bytes": sum(v.numel() * v.element_size() for v in entry.values()),
                "dense_logits_bytes": self.dense_bytes.get(key),
                "build_seconds": self.build_seconds.get(key),
                "topk": int(entry[next(k for k in entry if k.endswith(".topk.indices"))].shape[-1])
                if any(k.endswith(".topk.indices") for k in entry)
                else None,
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
        entry = self._entries[key]
        rows = index.to(next(iter(entry.values())).device)
        return unflatten(
            {
                k: cut_positions(k, v.index_select(0, rows), seq_len).to(index.device, non_blocking=True)
                for k, v in entry.items()
            }
        )

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

    def _load_or_build(self, teachers: Teachers, request: SplitRequest, key: str) -> dict[str, Tensor] | None:
        if self.mode == "memory":
            return self._compute(teachers, request, key)
        assert self.root is not None
        entry = self.root / key
        with file_lock(self.root / f"{key}.lock"):
            if entry.exists() or entry.is_symlink():
                problem = verify_entry(entry) if entry.is_dir() else "not a folder (a file is in its place)"
                if problem is None:
                    log.info("teacher outputs for %s: reusing %s", request.split, entry)
                    return self._open(entry, request.device)
                log.warning("cached teacher outputs %s are %s; removing them and computing them again", entry, problem)
                remove_entry(entry)
            outputs = self._compute(teachers, request, key)
            if outputs is None:
                return None
            with atomic_entry(self.root, key, checked=(OUTPUTS,)) as tmp:
                torch.save({k: v.cpu() for k, v in outputs.items()}, tmp / OUTPUTS)
            log.info("teacher outputs for %s written to %s", request.split, entry)
        return self._open(entry, request.device)

    def _open(self, entry: Path, device: torch.device | str) -> dict[str, Tensor]:
        # Memory-mapped: pages are read as rows are looked up, and every process on this
        # machine (DDP ranks, parallel jobs) shares them through the page cache.
        outputs = torch.load(entry / OUTPUTS, mmap=True, weights_only=True, map_location="cpu")
        return outputs if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in outputs.items()}

    def _compute(self, teachers: Teachers, request: SplitRequest, key: str) -> dict[str, Tensor] | None:
        dataset, n = request.dataset, len(request.dataset)
        needs = {"hidden_states": request.hidden_states, "attentions": request.attentions}
        outputs: dict[str, Tensor] = {}
        started, dense = time.perf_counter(), 0
        # Sampled top-k slots: drawn from a generator seeded by the entry's key, so that a
        # rebuild gives the same entry.
        sampled = request.topk is not None and request.topk_samples > 0
        generator = torch.Generator(request.device).manual_seed(int(key[:12], 16)) if sampled else None
        for start in range(0, n, request.batch_size):
            rows = torch.arange(start, min(n, start + request.batch_size))
            batch = move_data_to_device(dataset.batch(rows, full_length=True), request.device)
            with torch.inference_mode(), request.context():
                flat = flatten(teachers(batch, **needs))
            if request.keep is not None:  # only the layers the loss maps: a fraction of all of them
                flat = {k: v for k, v in flat.items() if k.endswith(".logits") or k in request.keep}
            dense += sum(v.numel() * v.element_size() for k, v in flat.items() if k.endswith(".logits"))
            if request.topk is not None:
                flat = to_topk(flat, request.topk, request.topk_temperature, request.topk_samples, generator)
            if not outputs:
                size = sum(v[0].numel() * v.element_size() for v in flat.values()) * n
                if size > self.budget_bytes:
                    log.warning(
                        "teacher outputs for %s would take %.0f MB, over teacher.cache_budget_mb=%g; "
                        "the teacher runs on every %s batch",
                        request.split,
                        size / 2**20,
                        self.budget_bytes / 2**20,
                        request.split,
                    )
                    return None
                outputs = {k: v.new_empty((n, *v.shape[1:])) for k, v in flat.items()}
            for k, v in flat.items():
                outputs[k][start : start + len(v)] = v
        self.built.append(key)
        self.build_seconds[key] = round(time.perf_counter() - started, 2)
        self.dense_bytes[key] = dense
        log.info(
            "teacher outputs for %s computed once: %d samples, %.2f MB",
            request.split,
            n,
            sum(v.numel() * v.element_size() for v in outputs.values()) / 2**20,
        )
        return outputs
