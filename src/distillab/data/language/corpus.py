"""Plain-text corpora for causal language modelling: reading documents and packing their
token ids into fixed-length blocks (pure functions; the data module comes on top)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distillab.core.config import ConfigError
from distillab.data.text.table import Column, read_table


def read_corpus_texts(
    path: str | Path,
    column: Column | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    *,
    key: str = "path",
) -> list[str]:
    """The documents of ``path``, stripped, blank ones left out.

    ``column=None``: a plain-text file, one document a line. Otherwise a column of a TSV/CSV
    file, read as :func:`distillab.data.text.table.read_table` reads it: a header name
    (``sst2/train.tsv``: ``"sentence"``) or a 0-based index (``agnews/*.tsv`` has no header:
    ``0``). ``header`` defaults to whether ``column`` is a name.
    """
    if column is None:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(key, str(path), "no such file")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as err:
            raise ConfigError(key, str(path), f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
        texts = [line.strip() for line in lines]
    else:
        if header is None:
            header = isinstance(column, str)
        texts, _ = read_table(path, column, column, header, delimiter, key=key)
    texts = [text for text in texts if text]
    if not texts:
        raise ConfigError(key, str(path), "has no non-blank documents")
    return texts


def pack_blocks(token_ids: Sequence[Sequence[int]], block_size: int, eos_id: int) -> Tensor:
    """The documents' ids joined with ``eos_id`` between consecutive documents, cut into
    rows of ``block_size``: a LongTensor [n_blocks, block_size]; the last partial block is
    dropped (no padding), so there may be no block at all ([0, block_size])."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError("block_size", block_size, "must be a positive integer")
    n_docs = len(token_ids)
    total = sum(len(doc) for doc in token_ids) + max(n_docs - 1, 0)
    n_blocks = total // block_size
    if n_blocks == 0:
        return torch.empty(0, block_size, dtype=torch.long)
    separated = chain.from_iterable((doc, (eos_id,)) if i < n_docs - 1 else (doc,) for i, doc in enumerate(token_ids))
    flat = np.fromiter(chain.from_iterable(separated), dtype=np.int64, count=total)
    return torch.from_numpy(flat[: n_blocks * block_size].reshape(n_blocks, block_size))
