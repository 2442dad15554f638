"""Content-addressed store of trained teachers: ``<teachers_dir>/<key>/``.

The key hashes everything that determines the teacher (its model config, the data config,
its training config, the seed), so a sweep over student or loss settings trains each
teacher once and every later run that asks for the same teacher reuses it.

An entry is written into a temporary folder and renamed into place only when complete;
``manifest.json`` (written last) holds the SHA-256 of the weights. The same helpers keep
the teachers' cached outputs (teachers/cache.py) under ``<teachers_dir>/outputs/``. An entry without a
manifest, or whose weights do not match it, is treated as absent, removed and retrained.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillab.config import ConfigError

log = logging.getLogger(__name__)

WEIGHTS = "weights.pt"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (DDP ranks, parallel jobs of a sweep): the first
    to get it builds an entry, the others wait and then find it built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def atomic_entry(root: Path, key: str, checked: tuple[str, ...]) -> Iterator[Path]:
    """Yield a temporary folder to fill; then write the manifest (SHA-256 of the ``checked``
    files, written last) and rename the folder to ``root/key`` in one step."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        manifest = {"key": key, "sha256": {name: sha256_file(tmp / name) for name in checked}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        final = root / key
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify_entry(entry: Path) -> str | None:
    """None if every file named in the manifest matches its hash, else what is wrong."""
    try:
        hashes = json.loads((entry / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return "incomplete (no readable manifest)"
    for name, expected in hashes.items():
        if not (entry / name).is_file() or sha256_file(entry / name) != expected:
            return f"corrupt ({name} does not match the manifest)"
    return None


def teacher_key(parts: dict[str, Any]) -> str:
    """Stable short hash of plain (JSON-able) config parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
        if not entry.exists():
            return None
        problem = self._verify(entry)
        if problem is None:
            return entry
        log.warning("teacher store entry %s is %s; removing it and training the teacher again", entry, problem)
        shutil.rmtree(entry, ignore_errors=True)
        return None

    @staticmethod
    def _verify(entry: Path) -> str | None:
        problem = verify_entry(entry)
        if problem is None and not (entry / WEIGHTS).is_file():
            problem = "incomplete (no weights)"
        return problem

    def save(self, key: str, model: nn.Module, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
        """Write the entry atomically: build it in a temporary folder, then rename it."""
        with atomic_entry(self.root, key, checked=(WEIGHTS,)) as tmp:
            torch.save(model.state_dict(), tmp / WEIGHTS)
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return self.path(key)

    def metrics(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / "metrics.json").read_text())


def load_teacher_weights(model: nn.Module, path: str | Path, key: str = "teacher.ckpt_path") -> None:
    """Load teacher weights from a store entry, a weights file, or a Lightning ``.ckpt``.

    A Lightning checkpoint of a ClassifierModule holds the model under ``model.``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        problem = TeacherStore._verify(path)
        if problem:
            raise ConfigError(key, str(path), f"is a teacher store folder that is {problem}")
        path = path / WEIGHTS
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file: give a .ckpt, a weights.pt or a teacher store folder")
    try:
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
