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

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillab.core.config import ConfigError
from distillab.core.entries import atomic_entry, file_lock, verify_entry

log = logging.getLogger(__name__)

WEIGHTS = "weights.pt"


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
