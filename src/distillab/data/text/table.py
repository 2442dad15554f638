"""Reading (text, label) pairs from a TSV or CSV file.

Comma-separated files are read with standard CSV quoting (a text holding commas is quoted).
Tab-separated files are read one row a line, without quote handling, as GLUE's loaders do:
a sentence may hold a lone ``"``, which CSV quoting would take for the start of a field
running over many lines. Some TSV files were written by a CSV writer all the same (AG News
here: ``"... ""major neglect"" ..."``), so a field that is exactly one CSV-quoted string is
unquoted; any other field is kept as it is.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from distillab.core.config import ConfigError

Column = int | str

DELIMITER_BY_SUFFIX = {".tsv": "\t", ".txt": "\t", ".csv": ","}
# A whole field in CSV quotes: "...", with any quote inside doubled.
CSV_QUOTED = re.compile(r'"((?:[^"]|"")*)"', re.DOTALL)


def delimiter_for(path: Path, delimiter: str | None = None) -> str:
    """``delimiter`` if given, else by the file's suffix (tab for anything but ``.csv``)."""
    return delimiter if delimiter is not None else DELIMITER_BY_SUFFIX.get(path.suffix.lower(), "\t")


def unquote(field: str) -> str:
    """``field`` without CSV quoting if it is exactly one quoted string, else unchanged."""
    quoted = CSV_QUOTED.fullmatch(field)
    return quoted[1].replace('""', '"') if quoted else field


def _column_index(key: str, column: Column, header: list[str] | None, width: int, line: int) -> int:
    """The 0-based index of ``column`` (a header name or an index) in a row of ``width`` fields."""
    if isinstance(column, str):
        if header is None:
            raise ConfigError(key, column, "a column name needs header=true; without a header give a 0-based index")
        if column not in header:
            raise ConfigError(key, column, f"is not a column of the header {header}")
        return header.index(column)
    if column >= width:
        raise ConfigError(
            key,
            column,
            f"is out of range: line {line} has {width} columns (indices 0..{width - 1}); is the delimiter right?",
        )
    return column


def read_table(
    path: str | Path,
    text_column: Column,
    label_column: Column,
    header: bool,
    delimiter: str | None = None,
    *,
    key: str = "path",
) -> tuple[list[str], list[str]]:
    """The texts and the labels (as strings, stripped) of every non-blank row of ``path``.

    Columns are header names (``header=True``) or 0-based indices. ``key`` names the config
    key the path came from, so an error points at what to change.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file")
    sep = delimiter_for(path, delimiter)
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    texts: list[str] = []
    labels: list[str] = []
    try:
        # utf-8-sig: a spreadsheet's CSV export often starts with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=sep, quoting=quoting)
            names = None
            if header:
                names = next((row for row in reader if row), None)
                if names is None:
                    raise ConfigError(key, str(path), "is empty (header=true needs a header line)")
                names = [(unquote(name) if quoting == csv.QUOTE_NONE else name).strip() for name in names]
            columns, need = None, 0
            for row in reader:
                if not row:
                    continue  # blank lines, e.g. a trailing one
                if columns is None:
                    columns = (
                        _column_index("text_column", text_column, names, len(row), reader.line_num),
                        _column_index("label_column", label_column, names, len(row), reader.line_num),
                    )
                    need = max(columns) + 1
                if len(row) < need:
                    raise ConfigError(
                        key,
                        str(path),
                        f"line {reader.line_num} has {len(row)} columns, needs at least "
                        f"{need} (text column {columns[0]}, label column {columns[1]})",
                    )
                text, label = row[columns[0]], row[columns[1]]
                if quoting == csv.QUOTE_NONE:
                    text, label = unquote(text), unquote(label)
                texts.append(text.strip())
                labels.append(label.strip())
    except UnicodeDecodeError as err:
        raise ConfigError(key, str(path), f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise ConfigError(key, str(path), f"cannot be read as delimited text: {err}") from None
    if not texts:
        raise ConfigError(key, str(path), "has no data rows" + (" after its header" if header else " (empty file)"))
    return texts, labels
