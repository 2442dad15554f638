"""Text classification from files, tokenized by a WordPiece vocabulary trained here.

One data set is three files in ``data_dir`` (``val_file: null`` carves a stratified
``val_fraction`` off the training file with ``split_seed``): TSV/CSV, ``.jsonl``/``.json``,
``.parquet`` or ``save_to_disk`` folders, by suffix or ``format``; or one ``DatasetDict`` folder
(``load_from_disk``). The same rows give the same splits and teacher store key in every format. Labels are strings in the files;
their ids follow ``labels`` when given, else the sorted training labels. The tokenizer is
trained on the training split (before ``max_train_samples`` subsets it, so the vocabulary
does not change with the subset size) and stored in ``tokenizer_dir`` for every later run.

The pieces that read and split one data set (files.py) and tokenize it (tokenized.py) are
shared with :mod:`distillab.data.text.domains`, which puts several data sets side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from distillab.data.text.files import (
    LOCATION_KEYS,
    SPLIT_FILES,
    read_text_splits,
    splits_fingerprint,
    subset_train,
    text_files,
)
from distillab.data.text.table import Column
from distillab.data.text.tokenized import LabelledTextDataModule, tokenize_splits
from distillab.data.text.unlabelled import check_unlabelled, read_lines, with_unlabelled

log = logging.getLogger(__name__)


class TextClassificationDataModule(LabelledTextDataModule):
    """One text classification data set from files; see the module docstring."""

    location_keys = LOCATION_KEYS

    def __init__(
        self,
        data_dir: str | None = None,
        train_file: str | None = None,
        test_file: str | None = None,
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
        format: str | None = None,
        load_from_disk: str | None = None,
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
            format,
            load_from_disk,
        )
        self.keep_text_knobs(val_fraction, split_seed, max_length, vocab_size, lowercase, tokenizer_dir)

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor]]:
        raw = read_text_splits(self.files, self.val_fraction, self.split_seed)
        self.tokenizer = self.load_tokenizer(raw.texts["train"])
        raw = subset_train(raw, self.files.max_train_samples, self.split_seed)
        self.rows_key = splits_fingerprint(raw)  # before the unlabelled rows: the teacher never sees them
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
