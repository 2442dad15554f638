"""The teacher run over a split once, its outputs written shard by shard (teachers/shards.py):
what the in-run cache does when an entry is missing, and what ``stage=capture`` does ahead of
training, on one process or on each DDP rank for its own shards.

A capture in progress lives in ``<outputs>/.capture-<key>/``. Each finished shard there has its
record; a capture that is killed and run again keeps every shard whose file matches its record
and computes the others. When every shard is there, the manifest is written and the folder is
renamed to ``<outputs>/<key>/`` in one step: an entry is complete or absent.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from distillab.teachers.cache_key import SplitRequest
from distillab.teachers.ensemble import Teachers
from distillab.teachers.flat_outputs import flatten, to_topk
from distillab.teachers.shards import (
    ShardRecord,
    finished_shard,
    shard_file,
    shard_ranges,
    shard_seed,
    write_manifest,
    write_shard,
)


@dataclass
class ShardOutputs:
    """One shard's outputs, computed: rows ``start`` onwards, and what dense logits would have taken."""

    start: int
    tensors: dict[str, Tensor]
    dense_bytes: int

    def split_bytes(self, rows: int) -> int:
        """What ``rows`` rows like this shard's take: the whole entry's size, from its first shard."""
        return rows * sum(v[0].numel() * v.element_size() for v in self.tensors.values())


@dataclass
class Progress:
    """What one process did towards an entry: the shards it wrote, and those it found finished."""

    records: list[ShardRecord] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    dense_bytes: int = 0
    seconds: float = 0.0


def compute_shard(
    teachers: Teachers, request: SplitRequest, key: str, number: int, rows_per_shard: int
) -> ShardOutputs:
    """The teacher's outputs for shard ``number`` of ``request.split``, in batches of
    ``request.batch_size`` that never cross a shard's edge (so every process computes the same
    batches); sampled top-k slots from the shard's own generator."""
    start, stop = shard_ranges(len(request.dataset), rows_per_shard)[number]
    needs = {"hidden_states": request.hidden_states, "attentions": request.attentions}
    sampled = request.topk is not None and request.topk_samples > 0
    generator = torch.Generator(request.device).manual_seed(shard_seed(key, number)) if sampled else None
    tensors: dict[str, Tensor] = {}
    dense = 0
    for first in range(start, stop, request.batch_size):
        rows = torch.arange(first, min(stop, first + request.batch_size))
        batch = move_data_to_device(request.dataset.batch(rows, full_length=True), request.device)
        with torch.inference_mode(), request.context():
            flat = flatten(teachers(batch, **needs))
        if request.keep is not None:  # only the layers the loss maps: a fraction of all of them
            flat = {k: v for k, v in flat.items() if k.endswith(".logits") or k in request.keep}
        dense += sum(v.numel() * v.element_size() for k, v in flat.items() if k.endswith(".logits"))
        if request.topk is not None:
            flat = to_topk(flat, request.topk, request.topk_temperature, request.topk_samples, generator)
        if not tensors:
            tensors = {k: v.new_empty((stop - start, *v.shape[1:]), device="cpu") for k, v in flat.items()}
        for k, v in flat.items():
            tensors[k][first - start : first - start + len(v)] = v
    return ShardOutputs(start, tensors, dense)


def capture_folder(root: Path, key: str) -> Path:
    return root / f".capture-{key}"


def capture_shards(
    teachers: Teachers,
    request: SplitRequest,
    key: str,
    root: Path,
    rows_per_shard: int,
    numbers: list[int] | None = None,
    rank: int = 0,
    budget_bytes: float | None = None,
) -> Progress | None:
    """Shards ``numbers`` (default: all) of the entry written into its capture folder, those
    finished by an earlier process kept. None, and nothing kept, when the first shard shows the
    whole entry would exceed ``budget_bytes``."""
    folder = capture_folder(root, key)
    folder.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(len(request.dataset), rows_per_shard)
    progress = Progress()
    started = time.perf_counter()
    for number in range(len(ranges)) if numbers is None else numbers:
        start, stop = ranges[number]
        record = finished_shard(folder, number, start, stop)
        if record is None:
            shard = compute_shard(teachers, request, key, number, rows_per_shard)
            if (
                budget_bytes is not None
                and not progress.records
                and shard.split_bytes(len(request.dataset)) > budget_bytes
            ):
                shutil.rmtree(folder, ignore_errors=True)
                return None
            record = write_shard(folder, number, start, shard.tensors, rank)
            progress.computed += 1
            progress.dense_bytes += shard.dense_bytes
        else:
            progress.reused += 1
        progress.records.append(record)
    progress.seconds = round(time.perf_counter() - started, 2)
    return progress


def finish_entry(root: Path, key: str, request: SplitRequest, rows_per_shard: int, **about) -> Path:
    """The capture folder, with every shard finished, made the entry ``root/key``: the manifest
    written last, then one rename. An error naming the first missing shard otherwise."""
    folder = capture_folder(root, key)
    records = []
    for number, (start, stop) in enumerate(shard_ranges(len(request.dataset), rows_per_shard)):
        record = finished_shard(folder, number, start, stop, rehash=False)  # hashed as they were written
        if record is None:
            raise RuntimeError(f"capture of {key} is not finished: {shard_file(number)} is missing or damaged")
        records.append(record)
    for leftover in folder.glob("*.partial"):
        leftover.unlink()
    write_manifest(folder, key, len(request.dataset), rows_per_shard, records, **about)
    final = root / key
    shutil.rmtree(final, ignore_errors=True)
    os.replace(folder, final)
    return final


def request_summary(request: SplitRequest) -> dict:
    """What the entry was asked for, in the manifest for people reading it (not part of the format)."""
    return {
        "split": request.split,
        "hidden_states": request.hidden_states,
        "attentions": request.attentions,
        "kept_layers": sorted(request.keep) if request.keep is not None else None,
        "topk": request.topk,
        "temperature": request.topk_temperature if request.topk is not None else None,
        "sampled_slots": request.topk_samples if request.topk is not None else 0,
        "precision": request.precision,
    }
