"""Checkpoints a run can trust when it resumes.

:class:`HashedCheckpointIO` writes each checkpoint with its SHA-256 beside it
(``last.ckpt.sha256``), so that a checkpoint damaged later (a partial copy, a full disk
during a copy, bit rot) is detected before a run resumes from it or tests it.

The checkpoint and its hash are one entry, whatever moment a process is killed at:

1. the hash and the checkpoint are written to ``<name>.sha256.partial`` and ``<name>.partial``;
2. the old ``<name>.sha256`` is removed, then ``<name>.partial`` renamed to ``<name>``, then
   ``<name>.sha256.partial`` to ``<name>.sha256``.

So a ``.sha256`` beside a checkpoint is always that checkpoint's hash (never the previous
epoch's: a mismatch is damage, not an interrupted save), and a save cut short after its bytes
were written is finished by the next reader (:func:`finish_interrupted_save`): no epoch is lost.
A checkpoint with no hash (copied from elsewhere, or a save cut between the two renames with
its partial files gone) is accepted when it opens as a complete zip archive whose members
pass their CRC-32 (what ``torch.save`` writes), and its hash is recorded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import zipfile
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from distillab.core.keys import file_digest

log = logging.getLogger(__name__)

SUFFIX = ".sha256"
PARTIAL = ".partial"  # a file of a save in progress
ASIDE = ".corrupt"  # a damaged last.ckpt, kept under this suffix


class CorruptCheckpointError(RuntimeError):
    """A checkpoint whose bytes do not match the hash written with it, or that does not open."""


def hash_path(path: Path) -> Path:
    return Path(f"{path}{SUFFIX}")


def partial_path(path: Path) -> Path:
    return Path(f"{path}{PARTIAL}")


def _write_synced(path: Path, data: bytes | memoryview) -> None:
    """Bytes on disk before the rename that publishes them (a lost machine keeps the order too)."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_hash(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def save_steps(data: bytes | memoryview, path: Path) -> list[Callable[[], object]]:
    """The steps that write ``data`` as ``path`` with its SHA-256 as ``path.sha256``, in the
    order of the module's docstring (a list, so that a test can stop after any of them, as a
    kill would): wherever they stop, the pair on disk is the old one, the new one, or a
    checkpoint without a hash; never a checkpoint with another's hash."""
    digest = hashlib.sha256(data).hexdigest()
    recorded = hash_path(path)
    return [
        partial(_write_synced, partial_path(recorded), digest.encode()),
        partial(_write_synced, partial_path(path), data),
        partial(recorded.unlink, missing_ok=True),
        partial(os.replace, partial_path(path), path),
        partial(os.replace, partial_path(recorded), recorded),
    ]


def save_hashed(data: bytes | memoryview, path: Path) -> None:
    for step in save_steps(data, path):
        step()


def finish_interrupted_save(path: Path) -> None:
    """Complete a save of ``path`` that a kill cut short once both partial files were whole
    (the partial checkpoint matches the partial hash); drop the partial files otherwise."""
    part, recorded = partial_path(path), hash_path(path)
    want = _read_hash(partial_path(recorded))
    try:
        if want is not None and part.is_file() and file_digest(part) == want:
            recorded.unlink(missing_ok=True)
            os.replace(part, path)
        if want is not None and not recorded.exists() and path.is_file() and file_digest(path) == want:
            os.replace(partial_path(recorded), recorded)
    except FileNotFoundError:  # another rank of the same run finished it first
        pass
    part.unlink(missing_ok=True)
    partial_path(recorded).unlink(missing_ok=True)


def archive_problem(path: Path) -> str | None:
    """None if ``path`` is a complete torch checkpoint archive, else what is wrong. ``torch.save``
    writes a zip whose members carry a CRC-32: reading them all finds a truncated copy and
    flipped bytes (which ``torch.load`` itself may not notice)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error) as err:
        return f"damaged: not a readable checkpoint archive ({err})"
    if bad is not None:
        return f"damaged: its part {bad} fails its CRC check"
    if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):
        return "damaged: a zip archive but not a torch checkpoint (no data.pkl)"
    return None


def verify_checkpoint(path: str | Path) -> str | None:
    """None if ``path`` matches its recorded hash, or has none and opens as a checkpoint
    (:func:`archive_problem`); else what is wrong."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    recorded = _read_hash(hash_path(path))
    if recorded is None:
        return archive_problem(path)
    if file_digest(path) != recorded:
        return "corrupt: its SHA-256 does not match the one written with it"
    return None


def record_hash(path: Path) -> None:
    """Write the hash of a checkpoint that came without one, so that later damage is found."""
    tmp = Path(f"{hash_path(path)}.{os.getpid()}.tmp")  # per process: DDP ranks may all do this
    _write_synced(tmp, file_digest(path).encode())
    os.replace(tmp, hash_path(path))


class HashedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, each checkpoint written with its SHA-256 as one entry
    (:func:`save_hashed`) and checked on every load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_hashed(buffer.getbuffer(), path)
        except OSError as err:  # a full disk: say which file; leave no partial file behind
            for leftover in (partial_path(path), partial_path(hash_path(path))):
                leftover.unlink(missing_ok=True)
            raise OSError(err.errno, err.strerror, err.filename or str(path)) from err

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        finish_interrupted_save(Path(path))
        problem = verify_checkpoint(path)
        if problem:
            raise CorruptCheckpointError(
                f"checkpoint {path} is {problem}; delete it (and {path}{SUFFIX}) to train that stage again"
            )
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        for leftover in (hash_path(path), partial_path(path), partial_path(hash_path(path))):
            leftover.unlink(missing_ok=True)


def aside_path(path: Path) -> Path:
    """Where a damaged ``path`` is kept: ``<name>.corrupt``, or ``.corrupt.1``, ... when an
    earlier one is there already (nothing is overwritten)."""
    candidates = (Path(f"{path}{ASIDE}{'' if i == 0 else f'.{i}'}") for i in range(1_000_000))
    return next(p for p in candidates if not p.exists())


def resumable(checkpoint_dir: Path) -> Path | None:
    """``last.ckpt`` in ``checkpoint_dir`` when a stage can continue from it, after finishing
    a save a kill cut short. One without a hash that opens is accepted (its hash recorded); a
    damaged one is reported and set aside (``last.ckpt.corrupt``), and the stage starts again."""
    last = checkpoint_dir / "last.ckpt"
    finish_interrupted_save(last)
    if not last.is_file():
        return None
    problem = verify_checkpoint(last)
    if problem is None:
        if not hash_path(last).is_file():
            log.info("%s has no %s (copied from elsewhere?); it opens, so it is resumed from", last, SUFFIX)
            record_hash(last)
        return last
    aside = aside_path(last)
    log.warning("%s is %s: it is kept as %s and this stage trains from the start", last, problem, aside.name)
    os.replace(last, aside)
    hash_path(last).unlink(missing_ok=True)
    return None


def rng_states() -> dict[str, Any]:
    """Every random generator a training step draws from, so that a resumed run draws the same
    numbers (shuffles, dropout) as one that was never interrupted."""
    # numpy's key as a tensor: checkpoints load with torch.load(weights_only=True), which refuses numpy arrays.
    kind, key, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
