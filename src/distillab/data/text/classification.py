"""Text classification from TSV/CSV files, tokenized by a WordPiece vocabulary trained here.

One data set is three files in ``data_dir`` (``val_file: null`` carves a stratified
``val_fraction`` off the training file with ``split_seed``). Labels are strings in the files;
their ids follow ``labels`` when given, else the sorted training labels. The tokenizer is
trained on the training split (before ``max_train_samples`` subsets it, so the vocabulary
does not change with the subset size) and stored in ``tokenizer_dir`` for every later run.

The pieces that read and split one data set are functions, shared with
:mod:`distillab.data.text.domains`, which puts several data sets side by side.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from distillab.core.config import ConfigError, check_int, check_number
from distillab.data.split import stratified_pick
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.data.text.table import Column, read_table
from distillab.data.text.unlabelled import check_unlabelled, read_lines, with_unlabelled
from distillab.data.tokenizer import encode, load_or_train_wordpiece, tokenizer_hash

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train_file", "val": "val_file", "test": "test_file"}


@dataclass(frozen=True)
class TextFiles:
    """Where one data set's splits are and how to read them (built by :func:`text_files`)."""

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


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")
    return value


def _check_column(key: str, value: Any) -> Column:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, value, "must be a 0-based column index or a column name (with header=true)")
    return value


def text_files(
    data_dir: str,
    train_file: str,
    test_file: str,
    val_file: str | None = None,
    text_column: Column = 0,
    label_column: Column = 1,
    header: bool = False,
    delimiter: str | None = None,
    labels: Sequence[Any] | None = None,
    max_train_samples: int | None = None,
) -> TextFiles:
    """The per-data-set knobs, checked: the files exist, columns and labels are well-formed."""
    if not isinstance(data_dir, (str, Path)) or not Path(data_dir).expanduser().is_dir():
        raise ConfigError("data_dir", data_dir, "no such folder; point it at the folder holding the data files")
    root = Path(data_dir).expanduser().resolve()
    for key, name in (("train_file", train_file), ("test_file", test_file), ("val_file", val_file)):
        if key == "val_file" and name is None:
            continue
        if not isinstance(name, str) or not (root / name).is_file():
            raise ConfigError(key, name, f"no such file: {root / str(name)} (file names are relative to data_dir)")
    header = _check_bool("header", header)
    columns = _check_column("text_column", text_column), _check_column("label_column", label_column)
    if columns[0] == columns[1]:
        raise ConfigError("label_column", label_column, "must differ from text_column")
    for key, column in zip(("text_column", "label_column"), columns):
        if isinstance(column, str) and not header:
            raise ConfigError(key, column, "a column name needs header=true; without a header give a 0-based index")
    if delimiter == "\\t":  # `data.delimiter='\t'` on a command line arrives as backslash, t
        delimiter = "\t"
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(
            "delimiter",
            delimiter,
            "must be one character (e.g. ',' or '\\t'), or null for tab in .tsv/.txt and comma in .csv",
        )
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or not labels:
            raise ConfigError(
                "labels", labels, "must be a non-empty list of label names, or null for the sorted training labels"
            )
        labels = tuple(str(label).strip() for label in labels)
        if len(set(labels)) != len(labels):
            raise ConfigError("labels", list(labels), "must not repeat a label")
    if max_train_samples is not None:
        max_train_samples = check_int("max_train_samples", max_train_samples, low=1)
    return TextFiles(root, train_file, test_file, val_file, *columns, header, delimiter, labels, max_train_samples)


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


def tokenizer_settings(max_length: int, vocab_size: int, lowercase: bool, tokenizer_dir: str) -> TokenizerSettings:
    # 3 tokens at least: [CLS], one word piece, [SEP].
    return TokenizerSettings(
        check_int("max_length", max_length, low=3),
        check_int("vocab_size", vocab_size, low=16),
        _check_bool("lowercase", lowercase),
        _check_dir("tokenizer_dir", tokenizer_dir),
    )


def _check_dir(key: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value) or Path(value).expanduser().is_file():
        raise ConfigError(key, value, "must be a folder path (created if missing)")
    return Path(value).expanduser()


def check_split_knobs(val_fraction: float, split_seed: int) -> tuple[float, int]:
    return (
        check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True),
        check_int("split_seed", split_seed, low=0),
    )


def tokenize_splits(
    texts: Mapping[str, list[str]], tokenizer: Tokenizer, max_length: int
) -> dict[str, dict[str, Tensor]]:
    return {split: encode(tokenizer, split_texts, max_length) for split, split_texts in texts.items()}


@dataclass(frozen=True)
class TokenizerSettings:
    max_length: int
    vocab_size: int
    lowercase: bool
    tokenizer_dir: Path


class TokenizedTextDataModule(TensorDataModule):
    """What every text data module shares: token-id inputs, cut per batch, from a tokenizer
    trained here or, after :meth:`use_tokenizer`, a pretrained model's own."""

    dynamic_padding = True
    tokenizer: Tokenizer | None = None
    tokenizer_file: Path | None = None
    tokenizer_settings: TokenizerSettings
    max_length: int

    def use_tokenizer(self, path: Path) -> None:
        """Tokenize with ``path`` (a ``tokenizer.json``) instead of training a WordPiece:
        a pretrained model reads only the ids of its own vocabulary. Call before setup."""
        if self.splits:
            raise RuntimeError("use_tokenizer must be called before the data are set up")
        self.tokenizer_file = Path(path)

    def load_tokenizer(self, train_texts: Sequence[str]) -> Tokenizer:
        if self.tokenizer_file is not None:
            log.info("tokenizing with %s", self.tokenizer_file)
            return Tokenizer.from_file(str(self.tokenizer_file))
        s = self.tokenizer_settings
        return load_or_train_wordpiece(train_texts, s.vocab_size, s.lowercase, s.tokenizer_dir)

    @property
    def model_kwargs(self) -> dict[str, int]:
        self.setup()
        return {
            "num_labels": self.num_classes,
            "vocab_size": self.tokenizer.get_vocab_size(),
            "max_length": self.max_length,
        }

    def fingerprint(self) -> str | None:
        self.setup()
        return tokenizer_hash(self.tokenizer)

    def labelled_texts(self) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
        """Each split's texts and labels, without the rows that have none (``unlabelled``)."""
        self.setup()
        texts = dict(self.texts)
        labels = {split: ds.labels.tolist() for split, ds in self.splits.items()}
        if self.has_label is not None:
            keep = self.has_label.tolist()
            texts["train"] = [t for t, k in zip(texts["train"], keep) if k]
            labels["train"] = [y for y, k in zip(labels["train"], keep) if k]
        return texts, labels


class TextClassificationDataModule(TokenizedTextDataModule):
    """One text classification data set from TSV/CSV files; see the module docstring."""

    def __init__(
        self,
        data_dir: str,
        train_file: str,
        test_file: str,
        val_file: str | None = None,
        text_column: Column = 0,
        label_column: Column = 1,
        header: bool = False,
        delimiter: str | None = None,
        labels: Sequence[Any] | None = None,
        max_train_samples: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 64,
        vocab_size: int = 8000,
        lowercase: bool = True,
        tokenizer_dir: str = "outputs/teachers/tokenizers",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        labelled_fraction: float = 1.0,
        label_seed: int = 0,
        unlabelled: str | None = None,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.keep_labels(labelled_fraction, label_seed)
        self.unlabelled = check_unlabelled(unlabelled)
        self.files = text_files(
            data_dir,
            train_file,
            test_file,
            val_file,
            text_column,
            label_column,
            header,
            delimiter,
            labels,
            max_train_samples,
        )
        self.val_fraction, self.split_seed = check_split_knobs(val_fraction, split_seed)
        self.tokenizer_settings = tokenizer_settings(max_length, vocab_size, lowercase, tokenizer_dir)
        self.max_length = self.tokenizer_settings.max_length
        self.texts: dict[str, list[str]] = {}
        self.label_names: list[str] = []
        self.tokenizer: Tokenizer | None = None

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor]]:
        raw = read_text_splits(self.files, self.val_fraction, self.split_seed)
        self.tokenizer = self.load_tokenizer(raw.texts["train"])
        raw = subset_train(raw, self.files.max_train_samples, self.split_seed)
        extras: dict[str, dict[str, Tensor]] = {split: {} for split in SPLIT_FILES}
        if self.unlabelled is not None:
            raw, extras["train"]["has_label"] = with_unlabelled(raw, read_lines(self.unlabelled))
        self.texts, self.label_names, self.num_classes = raw.texts, raw.label_names, len(raw.label_names)
        inputs = tokenize_splits(raw.texts, self.tokenizer, self.max_length)
        log.info(
            "text data %s: %s samples, %d labels",
            self.files.data_dir,
            {k: len(v) for k, v in raw.labels.items()},
            self.num_classes,
        )
        return {split: (inputs[split], raw.labels[split], extras[split]) for split in SPLIT_FILES}
