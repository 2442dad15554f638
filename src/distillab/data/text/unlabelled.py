"""Inputs without labels (``data.unlabelled``): a text file, one input a line, added to the
student's training split for its distillation terms. No CE term reads their placeholder
label, and the teacher never trains on them (``has_label`` marks the rows that have one).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from distillab.core.config import ConfigError

if TYPE_CHECKING:
    from distillab.data.text.files import TextSplits


def check_unlabelled(path: Any) -> Path | None:
    if path is None:
        return None
    if not isinstance(path, (str, Path)) or not Path(path).expanduser().is_file():
        raise ConfigError("unlabelled", path, "no such file: give a text file with one input text a line, or null")
    return Path(path).expanduser().resolve()


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file: inputs without labels."""
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            "unlabelled",
            str(path),
            f"is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}): save it as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8), one input text a line",
        ) from None
    texts = [line.strip() for line in content.splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError("unlabelled", str(path), "holds no text: give one input text a line")
    return texts


def with_unlabelled(splits: TextSplits, texts: list[str]) -> tuple[TextSplits, Tensor]:
    """``texts`` appended to the training split with a placeholder label 0, and the mask of
    the rows that have a real label (the teacher trains only on those; no CE reads the rest)."""
    n = len(splits.labels["train"])
    has_label = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(len(texts), dtype=torch.bool)])
    labels = torch.cat([splits.labels["train"], torch.zeros(len(texts), dtype=torch.long)])
    return replace(
        splits,
        texts={**splits.texts, "train": splits.texts["train"] + texts},
        labels={**splits.labels, "train": labels},
    ), has_label
