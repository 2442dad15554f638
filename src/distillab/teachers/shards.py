"""Teacher outputs on disk as shards: safetensors files of a fixed number of rows, each written
atomically with its SHA-256, listed in a manifest (docs/capture.md gives the schema).

A split of ``rows`` samples is cut into shards ``[0, r), [r, 2r), ...`` of ``rows_per_shard`` =
r rows. A shard holds the flat outputs of its rows (teachers/flat_outputs.py: ``0.logits``, or
``0.topk.indices`` / ``.log_probs`` / ``.tail``, hidden states by layer), row ``i`` of the split
being row ``i - start`` of its shard. Shards are independent: one is computed from its rows
alone (its sampled top-k slots from a generator seeded by the entry's key and the shard's
number), so that a shard recomputed after a kill, or on another DDP rank, is byte for byte the
one an uninterrupted single process writes.

Reading is lazy: ``safetensors`` memory-maps each file, and a lookup touches only the pages of
the rows it gathers. Memory is bounded by one shard while writing and by the pages in use while
reading, whatever the split's size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from distillab.core.keys import file_digest

FORMAT = "distillab.teacher-outputs/2"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ShardRecord:
    """One written shard: its file, the split rows it holds ``[start, stop)``, its SHA-256 and
    size, and the process rank that wrote it."""

    file: str
    start: int
    stop: int
    sha256: str
    bytes: int
    rank: int = 0


def shard_ranges(rows: int, rows_per_shard: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each shard of a split of ``rows`` rows."""
    return [(start, min(rows, start + rows_per_shard)) for start in range(0, rows, rows_per_shard)]


def shard_file(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


def shard_seed(key: str, number: int) -> int:
    """The seed of shard ``number``'s sampled top-k slots: from the entry's key and the number only."""
    return int(hashlib.sha256(f"{key}:{number}".encode()).hexdigest()[:12], 16)


def write_shard(folder: Path, number: int, start: int, tensors: Mapping[str, Tensor], rank: int = 0) -> ShardRecord:
    """Write shard ``number`` (rows ``start`` onwards) to ``folder`` atomically: a ``.partial``
    file renamed once complete, then its record (``<file>.json``) written the same way, so a
    shard with a record is whole."""
    name = shard_file(number)
    partial = folder / f"{name}.partial"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(partial))
    os.replace(partial, folder / name)
    rows = len(next(iter(tensors.values())))
    record = ShardRecord(name, start, start + rows, file_digest(folder / name), (folder / name).stat().st_size, rank)
    _write_json(folder / f"{name}.json", asdict(record))
    return record


def finished_shard(folder: Path, number: int, start: int, stop: int, rehash: bool = True) -> ShardRecord | None:
    """The record of shard ``number`` if it was written whole for rows ``[start, stop)`` and its
    file still matches its hash (``rehash=False``: its size, for shards this capture has just
    written, which need not be read again); None (and the damaged files removed) otherwise."""
    name = shard_file(number)
    try:
        record = ShardRecord(**json.loads((folder / f"{name}.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    path = folder / name
    if (record.start, record.stop) == (start, stop) and path.is_file():
        if path.stat().st_size == record.bytes and (not rehash or file_digest(path) == record.sha256):
            return record
    for stale in (path, folder / f"{name}.json"):
        stale.unlink(missing_ok=True)
    return None


def write_manifest(folder: Path, key: str, rows: int, rows_per_shard: int, records: list[ShardRecord], **about: Any):
    """The entry's manifest, written last: what each shard holds and its hash (``sha256``, the
    form core/entries.py verifies), the tensors' names, dtypes and per-row shapes, and ``about``
    (what was asked of the teacher, how long it took)."""
    first = folder / records[0].file
    with safe_open(str(first), "pt") as f:
        slices = {name: f.get_slice(name) for name in f.keys()}
        tensors = {name: {"dtype": str(v.get_dtype()), "row_shape": v.get_shape()[1:]} for name, v in slices.items()}
    manifest = {
        "format": FORMAT,
        "key": key,
        "rows": rows,
        "rows_per_shard": rows_per_shard,
        "tensors": tensors,
        "shards": [asdict(r) for r in records],
        "sha256": {r.file: r.sha256 for r in records},
        **about,
    }
    _write_json(folder / MANIFEST, manifest)


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1))
    os.replace(partial, path)


def read_manifest(entry: Path) -> dict[str, Any]:
    return json.loads((entry / MANIFEST).read_text())


class ShardedOutputs:
    """A split's teacher outputs as shards: ``rows(index)`` gathers samples ``index`` from the
    shards that hold them. Shards are memory-mapped files (``open``) or tensors held in memory
    (``in_memory``, for ``teacher.cache=memory``)."""

    def __init__(self, starts: list[int], shards: list[dict[str, Tensor]]):
        self.starts = torch.tensor(starts, dtype=torch.long)
        self.shards = shards
        self.names = list(shards[0]) if shards else []
        self.rows_total = starts[-1] + len(next(iter(shards[-1].values()))) if shards else 0

    @classmethod
    def open(cls, entry: Path) -> ShardedOutputs:
        manifest = read_manifest(entry)
        shards = []
        for record in manifest["shards"]:
            with safe_open(str(entry / record["file"]), "pt") as f:  # views into the mapped file
                shards.append({name: f.get_tensor(name) for name in f.keys()})
        return cls([r["start"] for r in manifest["shards"]], shards)

    @classmethod
    def in_memory(cls, shards: list[tuple[int, dict[str, Tensor]]]) -> ShardedOutputs:
        return cls([start for start, _ in shards], [tensors for _, tensors in shards])

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for shard in self.shards for v in shard.values())

    def row_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.shards[0][name].shape[1:])

    def rows(self, index: Tensor) -> dict[str, Tensor]:
        """``{name: tensor[len(index), ...]}`` for samples ``index`` (CPU), one gather per shard touched."""
        index = index.cpu().long()
        number = torch.searchsorted(self.starts, index, right=True) - 1
        out = {
            name: torch.empty((len(index), *self.row_shape(name)), dtype=self.shards[0][name].dtype)
            for name in self.names
        }
        for shard in number.unique().tolist():
            where = (number == shard).nonzero().squeeze(1)
            local = index[where] - int(self.starts[shard])
            for name, value in self.shards[shard].items():
                out[name][where] = value.index_select(0, local)
        return out

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return iter(self.shards)
