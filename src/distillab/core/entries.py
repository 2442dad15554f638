"""Files that are complete or absent: an exclusive lock between processes, and a folder
written atomically with a manifest of its files' SHA-256 (written last).

What the teacher store, the teacher-output cache, the tokenizers and the checkpoints build on.
An entry without a manifest, or whose files do not match it, is treated as absent.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from distillab.core.keys import file_digest

MANIFEST = "manifest.json"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (DDP ranks, parallel jobs of a sweep): the first
    to get it builds an entry, the others wait (with no time limit) and then find it built.
    ``filelock`` takes it with the system's lock (flock on POSIX, LockFileEx on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


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
        manifest = {"key": key, "sha256": {name: file_digest(tmp / name) for name in checked}}
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
        if not (entry / name).is_file() or file_digest(entry / name) != expected:
            return f"corrupt ({name} does not match the manifest)"
    return None
