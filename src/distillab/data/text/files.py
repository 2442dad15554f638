"""One text classification data set's files: where its splits are, how to read them, and
their texts and label ids.

Labels are strings in the files; their ids follow ``labels`` when given, else the sorted
training labels. ``val_file: null`` carves a stratified ``val_fraction`` off the training file
with ``split_seed``. These functions are shared by one data set
(:mod:`distillab.data.text.classification`) and several side by side
(:mod:`distillab.data.text.domains`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from distillab.core.config import ConfigError, check_int, check_number
from distillab.data.split import stratified_pick
from distillab.data.text.table import Column, read_table

SPLIT_FILES = {"train": "train_file", "val": "val_file", "test": "test_file"}


@dataclass(frozen=True)
class TextFiles:
    """Where one data set's splits are and how to read them: the per-data-set config keys,
    checked by :func:`text_files` (``data_dir`` is then an absolute Path)."""

    data_dir: Path
    train_file: str
    test_file: str
    val_file: str | None = None
    text_column: Column = 0
    label_column: Column = 1
    header: bool = False
    delimiter: str | None = None
    labels: tuple[str, ...] | None = None
    max_train_samples: int | None = None

    def path(self, split: str) -> Path:
        return self.data_dir / getattr(self, SPLIT_FILES[split])


@dataclass(frozen=True)
class TextSplits:
    """Raw texts and label ids of each split, and the names of the label ids."""

    label_names: list[str]
    texts: dict[str, list[str]]
    labels: dict[str, Tensor]


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")
    return value


def _check_column(key: str, value: Any) -> Column:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, value, "must be a 0-based column index or a column name (with header=true)")
    return value


def text_files(*args: Any, **keys: Any) -> TextFiles:
    """The per-data-set knobs (the fields of :class:`TextFiles`, by position or name, as a
    config gives them), checked: the files exist, columns and labels are well-formed."""
    given = TextFiles(*args, **keys)
    root = _check_files(given)
    header = check_bool("header", given.header)
    return TextFiles(
        root,
        given.train_file,
        given.test_file,
        given.val_file,
        *_check_columns(given.text_column, given.label_column, header),
        header,
        _check_delimiter(given.delimiter),
        _check_labels(given.labels),
        None if given.max_train_samples is None else check_int("max_train_samples", given.max_train_samples, low=1),
    )


def _check_files(given: TextFiles) -> Path:
    """The absolute data folder, once it and the split files in it exist."""
    data_dir = given.data_dir
    if not isinstance(data_dir, (str, Path)) or not Path(data_dir).expanduser().is_dir():
        raise ConfigError("data_dir", data_dir, "no such folder; point it at the folder holding the data files")
    root = Path(data_dir).expanduser().resolve()
    for key, name in (("train_file", given.train_file), ("test_file", given.test_file), ("val_file", given.val_file)):
        if key == "val_file" and name is None:
            continue
        if not isinstance(name, str) or not (root / name).is_file():
            raise ConfigError(key, name, f"no such file: {root / str(name)} (file names are relative to data_dir)")
    return root


def _check_columns(text_column: Any, label_column: Any, header: bool) -> tuple[Column, Column]:
    columns = _check_column("text_column", text_column), _check_column("label_column", label_column)
    if columns[0] == columns[1]:
        raise ConfigError("label_column", label_column, "must differ from text_column")
    for key, column in zip(("text_column", "label_column"), columns):
        if isinstance(column, str) and not header:
            raise ConfigError(key, column, "a column name needs header=true; without a header give a 0-based index")
    return columns


def _check_delimiter(delimiter: Any) -> str | None:
    if delimiter == "\\t":  # `data.delimiter='\t'` on a command line arrives as backslash, t
        delimiter = "\t"
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(
            "delimiter",
            delimiter,
            "must be one character (e.g. ',' or '\\t'), or null for tab in .tsv/.txt and comma in .csv",
        )
    return delimiter


def _check_labels(labels: Any) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or not labels:
        raise ConfigError(
            "labels", labels, "must be a non-empty list of label names, or null for the sorted training labels"
        )
    labels = tuple(str(label).strip() for label in labels)
    if len(set(labels)) != len(labels):
        raise ConfigError("labels", list(labels), "must not repeat a label")
    return labels


def _sorted_labels(labels: Sequence[str]) -> list[str]:
    # Numeric labels by value, so "10" comes after "9"; anything else alphabetically.
    unique = set(labels)
    numeric = all(label.lstrip("-").isdigit() for label in unique)
    return sorted(unique, key=int if numeric else str)


def _label_ids(key: str, path: Path, labels: Sequence[str], names: Sequence[str]) -> Tensor:
    ids = {name: i for i, name in enumerate(names)}
    unknown = Counter(label for label in labels if label not in ids)
    if unknown:
        label, count = unknown.most_common(1)[0]
        more = f"; {len(unknown) - 1} other unknown labels" if len(unknown) > 1 else ""
        raise ConfigError(
            key,
            str(path),
            f"has label {label!r} ({count} rows{more}), not among the labels "
            f"{list(names)}: add it to labels or fix the file",
        )
    return torch.tensor([ids[label] for label in labels], dtype=torch.long)


def read_text_splits(files: TextFiles, val_fraction: float, split_seed: int) -> TextSplits:
    """The texts and label ids of train (whole: not subset), val and test."""
    read = {
        split: read_table(
            files.path(split),
            files.text_column,
            files.label_column,
            files.header,
            files.delimiter,
            key=SPLIT_FILES[split],
        )
        for split in SPLIT_FILES
        if getattr(files, SPLIT_FILES[split]) is not None
    }
    names = list(files.labels) if files.labels else _sorted_labels(read["train"][1])
    texts = {split: pair[0] for split, pair in read.items()}
    labels = {split: _label_ids(SPLIT_FILES[split], files.path(split), pair[1], names) for split, pair in read.items()}
    if "val" not in read:
        val, train = stratified_pick("val_fraction", val_fraction, labels["train"], val_fraction, split_seed)
        for split, keep in (("val", val), ("train", train)):
            texts[split] = [texts["train"][i] for i in keep.tolist()]
            labels[split] = labels["train"][keep]
    in_order = lambda by_split: {split: by_split[split] for split in SPLIT_FILES}  # noqa: E731
    return TextSplits(names, in_order(texts), in_order(labels))


def subset_train(splits: TextSplits, max_train_samples: int | None, seed: int) -> TextSplits:
    """At most ``max_train_samples`` training samples, stratified and drawn with ``seed``."""
    labels = splits.labels["train"]
    if max_train_samples is None or max_train_samples >= len(labels):
        return splits
    keep, _ = stratified_pick("max_train_samples", max_train_samples, labels, max_train_samples, seed)
    return replace(
        splits,
        texts={**splits.texts, "train": [splits.texts["train"][i] for i in keep.tolist()]},
        labels={**splits.labels, "train": labels[keep]},
    )


def check_split_knobs(val_fraction: float, split_seed: int) -> tuple[float, int]:
    return (
        check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True),
        check_int("split_seed", split_seed, low=0),
    )
