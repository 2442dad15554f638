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
from distillab.data.row_files import DELIMITERS, read_rows, reads_rows
from distillab.data.text.row_pairs import column_name
from distillab.data.text.table import Column, read_table


def read_corpus_texts(
    path: str | Path,
    column: Column | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    format: str | None = None,
    *,
    key: str = "path",
    column_key: str = "column",
) -> list[str]:
    """The documents of ``path``, stripped, blank ones left out.

    Rows (a ``.jsonl``/``.json``/``.parquet`` file or a ``save_to_disk`` folder, by ``format`` or
    the suffix; :mod:`distillab.data.row_files`): the text of ``column`` (a name or an index into
    the columns), which they need; a null value is a blank document. ``column=None``: a plain-text
    file, one document a line. Otherwise a column of a TSV/CSV file, read as
    :func:`distillab.data.text.table.read_table` reads it: a header name (``sst2/train.tsv``:
    ``"sentence"``) or a 0-based index (``agnews/*.tsv`` has no header: ``0``). ``header``
    defaults to whether ``column`` is a name. ``key`` and ``column_key`` name the config keys.
    """
    if Path(path).expanduser().exists() and reads_rows(Path(path).expanduser(), format):
        texts = _row_texts(Path(path).expanduser().resolve(), column, format, key, column_key)
    elif column is None:
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
        if delimiter is None and format is not None:
            delimiter = DELIMITERS[format]
        texts, _ = read_table(path, column, column, header, delimiter, key=key)
    texts = [text for text in texts if text]
    if not texts:
        raise ConfigError(key, str(path), "has no non-blank documents")
    return texts


def _row_texts(path: Path, column: Column | None, format: str | None, key: str, column_key: str) -> list[str]:
    rows = read_rows(path, key, format)
    if column is None:
        raise ConfigError(
            column_key, None, f"{path} holds rows: name the column of documents (its columns: {', '.join(rows[0])})"
        )
    name = column_name(column_key, column, rows, path)
    texts = []
    for i, row in enumerate(rows):
        value = row[name]
        if value is not None and not isinstance(value, str):
            raise ConfigError(key, str(path), f"row {i}: {name} is {value!r}, not text")
        texts.append((value or "").strip())
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
