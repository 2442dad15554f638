"""One text classification data set's files: where its splits are, how to read them, and
their texts and label ids.

A split is a file in ``data_dir`` read by its suffix (``.tsv``/``.txt``/``.csv``: delimited
text with ``header`` and ``delimiter``; ``.jsonl``/``.json``/``.parquet``: rows), or by
``format`` for every file; a ``save_to_disk`` folder is a split too. ``load_from_disk`` (a
``DatasetDict`` folder) gives all three splits at once: its ``train``, ``validation`` (or
``val``) and ``test``. Labels are strings in the files; their ids follow ``labels`` when given, else the sorted
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
from distillab.core.keys import content_key, tensors_digest, texts_key
from distillab.data.row_files import check_format, check_saved_folder, reads_rows, saved_splits
from distillab.data.split import stratified_pick
from distillab.data.text.row_pairs import read_pairs
from distillab.data.text.table import Column

SPLIT_FILES = {"train": "train_file", "val": "val_file", "test": "test_file"}
# The split names of a DatasetDict read with load_from_disk (validation: datasets' own name).
SAVED_SPLITS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
# The keys that say where the rows are and how to parse them: the store key hashes the rows
# read instead (distillab.data.row_identity), so they do not enter it.
LOCATION_KEYS = (
    "data_dir",
    "train_file",
    "val_file",
    "test_file",
    "text_column",
    "label_column",
    "header",
    "delimiter",
    "format",
    "load_from_disk",
)


@dataclass(frozen=True)
class TextFiles:
    """Where one data set's splits are and how to read them: the per-data-set config keys,
    checked by :func:`text_files` (``data_dir`` is then an absolute Path; with
    ``load_from_disk``, that folder, and the file keys its split folders)."""

    data_dir: Path | None = None
    train_file: str | None = None
    test_file: str | None = None
    val_file: str | None = None
    text_column: Column = 0
    label_column: Column = 1
    header: bool = False
    delimiter: str | None = None
    labels: tuple[str, ...] | None = None
    max_train_samples: int | None = None
    format: str | None = None
    load_from_disk: str | None = None

    def path(self, split: str) -> Path:
        return self.data_dir / getattr(self, SPLIT_FILES[split])

    def key(self, split: str) -> str:
        """The config key an error about ``split``'s file names."""
        return "load_from_disk" if self.load_from_disk is not None else SPLIT_FILES[split]


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
    format = check_format("format", given.format)
    if given.load_from_disk is not None:
        given = _saved_dataset_files(given)
    checked = replace(given, data_dir=_check_files(given), format=format)
    header = check_bool("header", given.header)
    # header applies to delimited text only: rows always have named columns.
    delimited = any(not reads_rows(checked.path(split), format) for split in _given_splits(checked))
    text_column, label_column = _check_columns(given.text_column, given.label_column, header, delimited)
    return replace(
        checked,
        text_column=text_column,
        label_column=label_column,
        header=header,
        delimiter=_check_delimiter(given.delimiter),
        labels=_check_labels(given.labels),
        max_train_samples=None
        if given.max_train_samples is None
        else check_int("max_train_samples", given.max_train_samples, low=1),
    )


def _given_splits(files: TextFiles) -> list[str]:
    return [split for split, key in SPLIT_FILES.items() if getattr(files, key) is not None]


def _saved_dataset_files(given: TextFiles) -> TextFiles:
    """``given`` with ``data_dir`` the ``load_from_disk`` folder and each file key the name of its
    split there (no validation split: None, val_fraction carves one)."""
    value = given.load_from_disk
    if not isinstance(value, (str, Path)) or not str(value) or not Path(value).expanduser().is_dir():
        raise ConfigError(
            "load_from_disk", value, "no such folder: give a folder written by datasets' DatasetDict.save_to_disk"
        )
    folder = Path(value).expanduser().resolve()
    if not (folder / "dataset_dict.json").is_file():
        check_saved_folder("load_from_disk", folder)  # not a saved dataset at all: says so
        raise ConfigError(
            "load_from_disk",
            str(folder),
            "holds one split (a Dataset): save a DatasetDict with train and test splits, "
            "or give split folders as train_file / test_file",
        )
    splits = saved_splits("load_from_disk", folder)
    found = {split: next((name for name in names if name in splits), None) for split, names in SAVED_SPLITS.items()}
    if found["train"] is None or found["test"] is None:
        raise ConfigError(
            "load_from_disk",
            str(folder),
            f"has the splits {splits}: needs train and test (and validation or val, else val_fraction of train)",
        )
    return replace(
        given,
        data_dir=folder,
        train_file=found["train"],
        val_file=found["val"],
        test_file=found["test"],
        load_from_disk=str(folder),
    )


def _check_files(given: TextFiles) -> Path:
    """The absolute data folder, once it and the split files (or ``save_to_disk`` folders) in it exist."""
    data_dir = given.data_dir
    if not isinstance(data_dir, (str, Path)) or not Path(data_dir).expanduser().is_dir():
        raise ConfigError("data_dir", data_dir, "no such folder; point it at the folder holding the data files")
    root = Path(data_dir).expanduser().resolve()
    for key, name in (("train_file", given.train_file), ("test_file", given.test_file), ("val_file", given.val_file)):
        if key == "val_file" and name is None:
            continue
        path = root / str(name)
        if isinstance(name, str) and path.is_dir():
            check_saved_folder(key, path)
        elif not isinstance(name, str) or not path.is_file():
            raise ConfigError(key, name, f"no such file: {path} (file names are relative to data_dir)")
    return root


def _check_columns(text_column: Any, label_column: Any, header: bool, delimited: bool) -> tuple[Column, Column]:
    columns = _check_column("text_column", text_column), _check_column("label_column", label_column)
    if columns[0] == columns[1]:
        raise ConfigError("label_column", label_column, "must differ from text_column")
    for key, column in zip(("text_column", "label_column"), columns):
        if isinstance(column, str) and not header and delimited:
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
        split: read_pairs(
            files.path(split),
            files.text_column,
            files.label_column,
            files.header,
            files.delimiter,
            files.format,
            key=files.key(split),
        )
        for split in _given_splits(files)
    }
    names = list(files.labels) if files.labels else _sorted_labels(read["train"][1])
    texts = {split: pair[0] for split, pair in read.items()}
    labels = {split: _label_ids(files.key(split), files.path(split), pair[1], names) for split, pair in read.items()}
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


def splits_fingerprint(splits: TextSplits) -> str:
    """Content hash of every split's texts and label ids and of the label names: what a teacher
    trained on these splits depends on, whatever files they were read from."""
    return content_key(
        {
            "label_names": splits.label_names,
            "texts": {split: texts_key(split, texts) for split, texts in splits.texts.items()},
            "labels": tensors_digest(sorted(splits.labels.items())),
        }
    )


def check_split_knobs(val_fraction: float, split_seed: int) -> tuple[float, int]:
    return (
        check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True),
        check_int("split_seed", split_seed, low=0),
    )
