"""Texts and labels from any file a text data set can be: delimited text (TSV/CSV, read by
:mod:`distillab.data.text.table`) or rows (``.jsonl``, ``.json``, ``.parquet``, a ``save_to_disk``
folder, read by :mod:`distillab.data.row_files`), with the same checks and results either way.

A column is a name, or a 0-based index into the columns in their order (a TSV without header
has only indices). Texts and labels are stripped strings, as the TSV reader gives them: a label
``1`` (an integer in JSON or Parquet, a ClassLabel id in a saved dataset) is ``"1"``, so the
same rows give the same labels in every format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillab.core.config import ConfigError
from distillab.data.row_files import DELIMITERS, check_column, columns_of, read_rows, reads_rows
from distillab.data.text.table import Column, read_table


def column_name(key: str, column: Column, rows: Sequence[Mapping[str, Any]], path: Path) -> str:
    """The name of ``column`` (a name, or an index into the first row's columns), once every row has it."""
    if not isinstance(column, str):
        names = columns_of(rows[:1])
        if column >= len(names):
            raise ConfigError(
                key,
                column,
                f"is out of range: {path} has {len(names)} columns ({', '.join(names)}); give an index or name",
            )
        column = names[column]
    return check_column(key, column, rows, path)


def _text(file_key: str, path: Path, i: int, column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(file_key, str(path), f"row {i}: {column} is {value!r}, not text")
    return value.strip()


def _label(file_key: str, path: Path, i: int, column: str, value: Any) -> str:
    if value is None or isinstance(value, (list, dict, bytes)):
        raise ConfigError(file_key, str(path), f"row {i}: {column} is {value!r}, not a label")
    return str(value).strip()


def read_row_pairs(
    path: Path, text_column: Column, label_column: Column, format: str | None, key: str
) -> tuple[list[str], list[str]]:
    """The stripped texts and labels of every row of ``path`` (see :func:`read_pairs`)."""
    rows = read_rows(path, key, format)
    names = [column_name(k, c, rows, path) for k, c in (("text_column", text_column), ("label_column", label_column))]
    return (
        [_text(key, path, i, names[0], row[names[0]]) for i, row in enumerate(rows)],
        [_label(key, path, i, names[1], row[names[1]]) for i, row in enumerate(rows)],
    )


def read_pairs(
    path: str | Path,
    text_column: Column,
    label_column: Column,
    header: bool,
    delimiter: str | None = None,
    format: str | None = None,
    *,
    key: str = "path",
) -> tuple[list[str], list[str]]:
    """The texts and labels of ``path``: rows when ``format`` (else its suffix, or it being a
    folder) says so, else delimited text read with ``header`` and ``delimiter`` (null: by
    ``format`` tsv/csv, else by the suffix). ``key`` names the file's config key."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ConfigError(key, str(path), "no such file")
    if reads_rows(path, format):
        return read_row_pairs(path, text_column, label_column, format, key)
    if delimiter is None and format is not None:
        delimiter = DELIMITERS[format]
    return read_table(path, text_column, label_column, header, delimiter, key=key)
