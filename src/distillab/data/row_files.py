"""Rows of a table file that is not delimited text: JSON Lines, JSON, Parquet, or a folder written
by ``datasets``' ``save_to_disk``. One reader for every data module that takes them (chat, text
classification, language-model corpora), so a file reads the same rows wherever it is given.

``.jsonl`` and ``.json`` are read alike, as ``datasets``' ``json`` builder reads them: a text that
starts with ``[`` is one JSON list of row objects, any other is one object a line (GSM8K's
format). ``.parquet`` is read with ``pyarrow``, a ``save_to_disk`` folder with
``datasets.load_from_disk``; those two need their package and say so when it is missing. The
stdlib reads JSON rather than ``datasets.load_dataset``: the rows are the same, JSON needs no
optional package, and a bad row is named one by one instead of failing one inferred Arrow schema.
Every problem stops with one line naming the config key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillab.core.config import ConfigError

SUFFIXES = (".jsonl", ".json", ".parquet")
# A file's format when its suffix does not say it (``format``): tsv/csv are delimited text
# (distillab.data.text.table), the others rows read here.
DELIMITERS = {"tsv": "\t", "csv": ","}
ROW_FORMATS = ("json", "jsonl", "parquet")
FORMATS = (*DELIMITERS, *ROW_FORMATS)


def check_format(key: str, value: Any) -> str | None:
    """``value`` as one of :data:`FORMATS` (lower case), or None: each file's suffix decides."""
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise ConfigError(
            key, value, f"must be one of {', '.join(FORMATS)}, or null (each file's reader by its suffix)"
        )
    return value.lower()


def reads_rows(path: Path, format: str | None = None) -> bool:
    """Whether ``path`` is read here (a folder, a row format, a row suffix) rather than as delimited text."""
    if path.is_dir():
        return True
    return format in ROW_FORMATS if format is not None else path.suffix.lower() in SUFFIXES


def check_saved_folder(key: str, path: Path) -> Path:
    """``path`` as a folder holding one ``save_to_disk`` Dataset (one split)."""
    if (path / "dataset_dict.json").is_file():
        raise ConfigError(
            key, str(path), f"holds several splits ({', '.join(saved_splits(key, path))}): give the folder of one"
        )
    if not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
        raise ConfigError(key, str(path), "is a folder but not one written by datasets' save_to_disk")
    return path


def saved_splits(key: str, path: Path) -> list[str]:
    """The split names of a ``DatasetDict.save_to_disk`` folder (its ``dataset_dict.json``)."""
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            key, str(path), "has no readable dataset_dict.json (not a DatasetDict.save_to_disk folder)"
        ) from None
    return [str(split) for split in splits]


def check_path(key: str, value: Any) -> Path:
    """``value`` as an existing .jsonl/.json/.parquet file or a ``save_to_disk`` folder."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(key, value, "must be a .jsonl, .json or .parquet file or a datasets save_to_disk folder")
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        return check_saved_folder(key, path)
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(key, str(path), f"must end in {', '.join(SUFFIXES)} (or be a save_to_disk folder)")
    return path


def read_rows(path: Path, key: str = "path", format: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``path`` (a file in a row format, by ``format`` or else its suffix, or a
    ``save_to_disk`` folder) as dicts, in file order; at least one."""
    kind = "saved" if path.is_dir() else format or path.suffix.lower().lstrip(".")
    if kind == "saved":
        rows = _read_saved_dataset(check_saved_folder(key, path), key)
    elif kind in ("json", "jsonl"):
        rows = _read_json(path, key)
    elif kind == "parquet":
        rows = _read_parquet(path, key)
    else:
        raise ConfigError(key, str(path), f"must end in {', '.join(SUFFIXES)} (or be a save_to_disk folder)")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConfigError(key, str(path), f"row {i} is not an object (a {type(row).__name__})")
    if not rows:
        raise ConfigError(key, str(path), "has no rows")
    return [dict(row) for row in rows]


def _text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(key, str(path), f"is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _read_json(path: Path, key: str) -> list[Any]:
    text = _text(path, key)
    if not text.lstrip().startswith("["):
        return _json_lines(text, path, key)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(key, str(path), f"is not JSON ({err.msg} at line {err.lineno})") from None


def _json_lines(text: str, path: Path, key: str) -> list[Any]:
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(
                key, str(path), f"line {line_no} is not JSON ({err.msg}); give one object a line or a list of objects"
            ) from None
    return rows


def _read_parquet(path: Path, key: str) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(key, str(path), "reading .parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError, its IO errors OSErrors
        raise ConfigError(key, str(path), f"is not a readable Parquet file ({err})") from None


def _read_saved_dataset(path: Path, key: str) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            key, str(path), "reading a save_to_disk folder needs datasets (pip install datasets)"
        ) from None
    return datasets.load_from_disk(str(path)).to_list()


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The column names of the rows, in first-seen order."""
    return list(dict.fromkeys(name for row in rows for name in row))


def check_column(key: str, name: Any, rows: Sequence[Mapping[str, Any]], path: Path) -> str:
    """``name`` as a column that every row has."""
    if not isinstance(name, str) or not name:
        raise ConfigError(key, name, "must be a column name")
    for i, row in enumerate(rows):
        if name not in row:
            where = "no such column" if i == 0 else f"row {i} has no such column"
            raise ConfigError(key, name, f"{where} in {path} (its columns: {', '.join(columns_of(rows[i : i + 1]))})")
    return name
