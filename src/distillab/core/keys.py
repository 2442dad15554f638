"""Content keys: short stable hashes of what determines a stored thing."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def teacher_key(parts: dict[str, Any]) -> str:
    """Stable short hash of plain (JSON-able) config parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
