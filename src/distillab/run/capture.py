"""``stage=capture``: the teachers run once over the data's splits, ahead of any student, and
their outputs written as the teacher-output cache's entries (teachers/capture.py, shards.py).

The entries are asked for exactly as the distillation run of the same config asks for them
(``DistillationModule.cache_request``: the loss's layers and temperature, ``cache.topk``, the
Trainer's precision), so the later ``stage=all`` or ``stage=distill`` run, or a whole sweep of
students, finds every split captured and never runs the teacher.

Lightning drives it: ``trainer.predict`` over the shards, one shard a predict step, so the run's
``trainer`` (devices, DDP, precision) is the capture's. Under DDP, rank r computes shards r,
r + W, r + 2W, ... of every split; once all ranks are done, rank 0 writes each manifest. A
capture that is killed and run again keeps each finished shard and computes the rest.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from distillab.core.config import ConfigError, build
from distillab.core.entries import file_lock, verify_entry
from distillab.modules.distiller import DistillationModule
from distillab.run.fitting import doing
from distillab.run.plan import RunPlan
from distillab.run.students import Distiller
from distillab.run.tally import Tally
from distillab.teachers.cache import TeacherOutputCache
from distillab.teachers.cache_key import SplitRequest
from distillab.teachers.capture import capture_shards, finish_entry, request_summary
from distillab.teachers.shards import read_manifest, shard_ranges
from distillab.teachers.store import remove_entry

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SplitCapture:
    """One split to capture: its request (as a distillation run makes it) and the entry's key."""

    request: SplitRequest
    key: str


class TeacherCapture(L.LightningModule):
    """The teachers of ``distiller`` over the shards of ``splits``; each predict step writes one
    shard of this rank's share into the split's capture folder."""

    def __init__(self, distiller: DistillationModule, splits: list[SplitCapture], cache: TeacherOutputCache):
        super().__init__()
        self.distiller = distiller
        self.splits = splits
        self.cache = cache
        self.computed = 0
        self.reused = 0

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        work = [
            (i, number)
            for i, split in enumerate(self.splits)
            for number in range(len(shard_ranges(len(split.request.dataset), self.cache.shard_rows)))
            if number % world == rank
        ]
        return DataLoader(work, batch_size=None, collate_fn=_as_is)

    def predict_step(self, item: tuple[int, int]) -> int:
        i, number = item
        split = self.splits[i]
        request = dataclasses.replace(
            split.request, device=self.device, context=self.trainer.precision_plugin.forward_context
        )
        assert self.cache.root is not None
        progress = capture_shards(
            self.distiller.teachers,
            request,
            split.key,
            self.cache.root,
            self.cache.shard_rows,
            [number],
            rank=self.trainer.global_rank,
        )
        assert progress is not None  # no budget: a capture is asked for
        self.computed += progress.computed
        self.reused += progress.reused
        return progress.computed  # not kept (return_predictions=False)


def _as_is(item: Any) -> Any:
    return item


def capture_teachers(plan: RunPlan, tally: Tally) -> dict[str, Any]:
    """Every split of ``cache.capture_splits`` captured (or found captured); per split its
    entry, rows, shards and bytes, for metrics.json."""
    cfg = plan.cfg
    distiller = Distiller.of(plan, tally)
    cache = distiller.cache
    if cache.root is None:
        raise ConfigError("cache.mode", cfg.cache.mode, "stage=capture writes entries to disk: use auto or disk")
    module = distiller.module(copy.deepcopy(plan.student_init))
    trainer = build(
        cfg.trainer,
        "trainer",
        logger=False,
        enable_checkpointing=False,
        callbacks=[
            build(
                node,
                f"callbacks.{name}",
                **({"dirpath": str(Path(cfg.paths.output_dir) / "capture")} if "dirpath" in node else {}),
            )
            for name, node in (cfg.get("callbacks") or {}).items()
            if "ModelCheckpoint" not in str(node.get("_target_", ""))
        ],
        use_distributed_sampler=False,
    )
    splits, found = [], {}
    for name in cfg.cache.get("capture_splits") or []:
        request = module.cache_request(name, plan.datamodule, "cpu", str(trainer.precision))
        if request is None:
            raise ConfigError(
                "cache.capture_splits", name, f"is not a split of this data ({', '.join(plan.datamodule.splits)})"
            )
        if request.inputs_vary:
            log.info("stage=capture: the %s inputs are augmented (new every epoch); not captured", name)
            continue
        key = cache.key(module.teachers, request)
        entry = cache.root / key
        if entry.is_dir() and verify_entry(entry) is None:
            log.info("teacher outputs for %s: already captured in %s", name, entry)
            found[name] = key
        else:
            splits.append(SplitCapture(request, key))
    started = time.perf_counter()
    capture = TeacherCapture(module, splits, cache)
    if splits:
        log.info(
            "capturing the teacher's outputs for %s in shards of %d rows",
            ", ".join(s.request.split for s in splits),
            cache.shard_rows,
        )
        with doing("the teacher's capture"):
            trainer.predict(capture, return_predictions=False)
        trainer.strategy.barrier("capture")  # every rank's shards written
        if trainer.global_rank == 0:
            for split in splits:
                _finish(cache, split, time.perf_counter() - started)
        trainer.strategy.barrier("capture finished")
    tally.seconds["capture"] = round(time.perf_counter() - started, 2)  # with the reused splits' checks
    summary = {name: _entry_summary(cache, key) for name, key in found.items()}
    for split in splits:
        summary[split.request.split] = _entry_summary(cache, split.key)
    return {
        "splits": dict(sorted(summary.items())),
        "shards_computed_here": capture.computed,
        "shards_reused": capture.reused,
        "shard_rows": cache.shard_rows,
    }


def _finish(cache: TeacherOutputCache, split: SplitCapture, seconds: float) -> None:
    assert cache.root is not None
    entry = cache.root / split.key
    with file_lock(cache.root / f"{split.key}.lock"):
        if entry.exists() or entry.is_symlink():
            remove_entry(entry)  # damaged (a whole one was found before capturing)
        finish_entry(
            cache.root,
            split.key,
            split.request,
            cache.shard_rows,
            **request_summary(split.request),
            build_seconds=round(seconds, 2),
        )
    log.info("teacher outputs for %s captured in %s", split.request.split, entry)


def _entry_summary(cache: TeacherOutputCache, key: str) -> dict[str, Any]:
    assert cache.root is not None
    manifest = read_manifest(cache.root / key)
    return {
        "key": key,
        "rows": manifest["rows"],
        "shards": len(manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "by_rank": sorted({s["rank"] for s in manifest["shards"]}),
    }
