"""Checkpoints a run can trust when it resumes.

Lightning writes each checkpoint atomically; :class:`HashedCheckpointIO` also writes its
SHA-256 beside it (``last.ckpt.sha256``), so that a checkpoint damaged later (a partial copy,
a full disk during a copy, bit rot) is detected before a run resumes from it or tests it.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from distillab.core.keys import file_digest

log = logging.getLogger(__name__)

SUFFIX = ".sha256"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint whose bytes do not match the hash written with it."""


def verify_checkpoint(path: str | Path) -> str | None:
    """None if ``path`` matches its recorded hash (or has none: written by another tool), else what is wrong."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    recorded = Path(f"{path}{SUFFIX}")
    if not recorded.is_file():
        return None
    if file_digest(path) != recorded.read_text().strip():
        return "corrupt: its SHA-256 does not match the one written with it"
    return None


class HashedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO plus a SHA-256 file per checkpoint, checked on every load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        try:
            super().save_checkpoint(checkpoint, path, storage_options)
            tmp = Path(f"{path}{SUFFIX}.tmp")
            tmp.write_text(file_digest(Path(path)))
            os.replace(tmp, f"{path}{SUFFIX}")
        except OSError as err:  # a full disk: say which file (fsspec's error does not)
            raise OSError(err.errno, err.strerror, err.filename or str(path)) from err

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        problem = verify_checkpoint(path)
        if problem:
            raise CorruptCheckpointError(
                f"checkpoint {path} is {problem}; delete it (and {path}{SUFFIX}) to train that stage again"
            )
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        Path(f"{path}{SUFFIX}").unlink(missing_ok=True)


def resumable(checkpoint_dir: Path) -> Path | None:
    """``last.ckpt`` in ``checkpoint_dir`` when a stage can continue from it; a damaged one is
    reported and set aside (``last.ckpt.corrupt``), and the stage starts again."""
    last = checkpoint_dir / "last.ckpt"
    if not last.is_file():
        return None
    problem = verify_checkpoint(last)
    if problem is None:
        return last
    log.warning("%s is %s: it is kept as %s.corrupt and this stage trains from the start", last, problem, last.name)
    os.replace(last, checkpoint_dir / "last.ckpt.corrupt")
    Path(f"{last}{SUFFIX}").unlink(missing_ok=True)
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
