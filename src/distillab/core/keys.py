"""Content keys: short stable hashes of what determines a stored thing, and the digests they
are built from (of a file, of texts, of tensors).

Stored teachers, tokenizers, cached teacher outputs and generated sequences on users' disks
are found by these keys: a primitive here must give the same value for the same input in
every release. What a key covers changes through the parts its caller gives (a format
version in them), never by changing how they are hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def short_hash(blob: str | bytes, length: int = 16) -> str:
    """The first ``length`` hex digits of SHA-256(``blob``), a str as UTF-8."""
    return hashlib.sha256(blob.encode() if isinstance(blob, str) else blob).hexdigest()[:length]


def content_key(parts: Any, length: int = 16) -> str:
    """Short hash of plain (JSON-able) parts: dict keys sorted, anything else (a Path) by its str."""
    return short_hash(json.dumps(parts, sort_keys=True, default=str), length)


def teacher_key(parts: dict[str, Any]) -> str:
    """Stable short hash of plain (JSON-able) config parts."""
    return content_key(parts)


def texts_key(header: str, texts: Sequence[str], length: int = 16) -> str:
    """Short SHA-256 of ``"<header>|<number of texts>"`` and then each text length-prefixed
    (8 bytes, little-endian), so that ``["ab", "c"]`` and ``["a", "bc"]`` differ."""
    digest = hashlib.sha256(f"{header}|{len(texts)}".encode())
    for text in texts:
        blob = text.encode()
        digest.update(len(blob).to_bytes(8, "little") + blob)
    return digest.hexdigest()[:length]


def tensors_digest(named: Iterable[tuple[str, Tensor]]) -> str:
    """SHA-256 of each name and then its tensor's dtype, shape and bytes, in the order given."""
    digest = hashlib.sha256()
    for name, tensor in named:
        digest.update(name.encode())
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
