"""Content-addressed store of trained teachers: ``<teachers_dir>/<key>/``.

The key hashes everything that determines the teacher (its model config, the data config,
its training config, the seed), so a sweep over student or loss settings trains each
teacher once and every later run that asks for the same teacher reuses it.

An entry is written into a temporary folder and renamed into place only when complete;
``manifest.json`` (written last) holds the SHA-256 of the weights. The weights are a
safetensors file (``weights.safetensors``: tensors and nothing else, so loading one runs no
code, like ``torch.load(weights_only=True)``); entries written before hold a ``weights.pt``
and are still read, with ``weights_only=True``. Tied tensors (a language model's embedding
and LM head are one tensor under two names) are stored once and named again on load. The same helpers keep
the teachers' cached outputs (teachers/cache.py) under ``<teachers_dir>/outputs/``. An entry without a
manifest, whose weights do not match it, or whose ``metrics.json`` does not read as a teacher's
metrics (empty, cut short, missing), is treated as absent, removed (one log line) and retrained;
so is a plain file where the entry's folder should be.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from distillab.core.config import ConfigError
from distillab.core.entries import atomic_entry, file_lock, verify_entry

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"
LEGACY_WEIGHTS = "weights.pt"  # entries written before the store used safetensors
METRICS = "metrics.json"
CONFIG = "config.json"
TIED = "tied"  # safetensors metadata: {name stored once: ..., name left out: name stored}


def save_weights(state: dict[str, Tensor], path: Path) -> None:
    """``state`` as a safetensors file. A tensor that is another name's (same storage, offset,
    shape and strides: tied weights) is left out and recorded under the metadata key ``tied``;
    one that only overlaps another's storage is copied (safetensors stores no shared memory)."""
    kept: dict[str, Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    storages: set[int] = set()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        ident = (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if ident in seen:
            tied[name] = seen[ident]
            continue
        seen[ident] = name
        kept[name] = tensor.clone() if storage in storages else tensor.contiguous()
        storages.add(storage)
    save_file(kept, path, metadata={TIED: json.dumps(tied)})


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from :func:`save_weights`' file, tied names pointing at their tensor again."""
    state = load_file(path, device="cpu")
    with safe_open(path, framework="pt") as f:
        tied = json.loads((f.metadata() or {}).get(TIED, "{}"))
    for name, source in tied.items():
        state[name] = state[source]
    return state


def remove_entry(path: Path) -> None:
    """Remove an entry, whatever is there: a folder, or a file or link in its place (which
    ``shutil.rmtree`` refuses). An entry that cannot be removed raises (exit 4), rather than
    being said removed and then found again."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def metrics_problem(entry: Path) -> str | None:
    """None if ``entry/metrics.json`` reads as a stored teacher's metrics (an object with its
    ``test`` results, what a reuse reports), else what is wrong."""
    try:
        metrics = json.loads((entry / METRICS).read_text())
    except FileNotFoundError:
        return f"incomplete (no {METRICS})"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"damaged ({METRICS} does not read as JSON: {type(err).__name__})"
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        return f"damaged ({METRICS} holds no 'test' results)"
    return None


def weights_file(entry: Path) -> Path | None:
    """The entry's weights: safetensors, else an older entry's weights.pt; None if neither."""
    return next((entry / name for name in (WEIGHTS, LEGACY_WEIGHTS) if (entry / name).is_file()), None)


class TeacherStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str) -> Any:
        """Held while one process looks up, and if need be trains and saves, the entry ``key``."""
        return file_lock(self.root / f".{key}.lock")

    def lookup(self, key: str) -> Path | None:
        """The entry's folder if it is complete and intact; a damaged entry is removed."""
        entry = self.path(key)
        if not entry.exists() and not entry.is_symlink():
            return None
        problem = self._verify(entry) or metrics_problem(entry)
        if problem is None:
            return entry
        log.warning("teacher store entry %s is %s; removing it and training the teacher again", entry, problem)
        remove_entry(entry)
        return None

    @staticmethod
    def _verify(entry: Path) -> str | None:
        if not entry.is_dir():
            return "not a folder (a file is in its place)"
        problem = verify_entry(entry)
        if problem is None and weights_file(entry) is None:
            problem = "incomplete (no weights)"
        return problem

    def save(self, key: str, model: nn.Module, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
        """Write the entry atomically: build it in a temporary folder, then rename it."""
        entry = self.path(key)
        if entry.is_symlink() or not entry.is_dir():  # atomic_entry's rename cannot put a folder over a file
            remove_entry(entry)
        with atomic_entry(self.root, key, checked=(WEIGHTS,)) as tmp:
            save_weights(model.state_dict(), tmp / WEIGHTS)
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
            (tmp / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return entry

    def metrics(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / METRICS).read_text())


def load_teacher_weights(model: nn.Module, path: str | Path, key: str = "teacher.ckpt_path") -> None:
    """Load teacher weights from a store entry, a weights file (``.safetensors``, or a
    ``torch.save``d state dict read with ``weights_only=True``), or a Lightning ``.ckpt``.

    A Lightning checkpoint of a ClassifierModule holds the model under ``model.``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        problem = TeacherStore._verify(path)
        if problem:
            raise ConfigError(key, str(path), f"is a teacher store folder that is {problem}")
        path = weights_file(path) or path / WEIGHTS
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file: give a .ckpt, a weights.pt or a teacher store folder")
    try:
        if path.suffix == ".safetensors":
            state = load_weights(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=path.suffix != ".ckpt")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(key, str(path), f"is not a readable checkpoint ({type(err).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch: a checkpoint of another architecture
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise ConfigError(key, str(path), f"does not match model.teacher: {first}") from None
    if result.missing_keys or result.unexpected_keys:
        example = (result.missing_keys or result.unexpected_keys)[0]
        raise ConfigError(
            key,
            str(path),
            f"does not match model.teacher ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected weights, e.g. {example})",
        )
