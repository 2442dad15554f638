"""Token classification (named-entity recognition) from CoNLL files: a tag for every word.

Three files in ``data_dir`` (conll.py reads them; ``val_file: null`` draws ``val_fraction`` of
the training sentences with ``split_seed``). Words are cut into sub-word tokens by the models'
tokenizer (a pretrained folder's ``tokenizer.json`` when the run binds one, else a WordPiece
trained here on the training sentences, as for text classification) and each word's tag goes
to its first token (token_labels.py); labels are [N, max_length], IGNORE_INDEX (-100) where no
word starts. Tag ids follow ``labels`` when given, else the sorted training tags.

Batches are ``{"inputs": {input_ids, attention_mask}, "labels": [B, L]}``, cut to the longest
sentence like every text batch. ``task = "token_classification"``: the models get a head per
token (``task`` in ``model_kwargs``), the modules report token accuracy and entity-level
precision, recall and F1 (seqeval), and what assumes one label per sample is refused
(run/checks.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from distillab.core.config import ConfigError, check_int
from distillab.core.keys import content_key, texts_key
from distillab.data.text.conll import TaggedSentences, check_tag_names, read_conll, sorted_tags, tag_ids
from distillab.data.text.files import SPLIT_FILES
from distillab.data.text.token_labels import encode_tagged
from distillab.data.text.tokenized import TokenizedTextDataModule

log = logging.getLogger(__name__)

TASK = "token_classification"
ROWS_FORMAT = "conll-v1"  # what rows_key covers


def _subset(sentences: TaggedSentences, keep: Tensor) -> TaggedSentences:
    rows = keep.tolist()
    return TaggedSentences([sentences.words[i] for i in rows], [sentences.tags[i] for i in rows])


def _random_split(sentences: TaggedSentences, size: int, seed: int) -> tuple[TaggedSentences, TaggedSentences]:
    """``size`` sentences drawn with ``seed`` and the rest, each in file order. Not stratified:
    a sentence has many tags, not one class."""
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
    picked, rest = order[:size].sort().values, order[size:].sort().values
    return _subset(sentences, picked), _subset(sentences, rest)


class TokenClassificationDataModule(TokenizedTextDataModule):
    """One tagged data set from CoNLL files; see the module docstring."""

    task = TASK
    location_keys = ("data_dir", "train_file", "val_file", "test_file")

    def __init__(
        self,
        data_dir: str | None = None,
        train_file: str | None = None,
        test_file: str | None = None,
        val_file: str | None = None,
        labels: list[str] | None = None,
        max_train_samples: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 192,
        vocab_size: int = 8000,
        lowercase: bool = True,
        tokenizer_dir: str = "outputs/teachers/tokenizers",
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.data_dir = self._check_data_dir(data_dir)
        self.split_files = {
            split: self._check_file_name(key, name)
            for split, key, name in (
                ("train", "train_file", train_file),
                ("val", "val_file", val_file),
                ("test", "test_file", test_file),
            )
        }
        if self.split_files["train"] is None or self.split_files["test"] is None:
            missing = "train_file" if self.split_files["train"] is None else "test_file"
            raise ConfigError(missing, None, "must name a CoNLL file in data_dir")
        self.tag_names = check_tag_names(labels)
        self.max_train_samples = (
            None if max_train_samples is None else check_int("max_train_samples", max_train_samples, low=1)
        )
        self.keep_text_knobs(val_fraction, split_seed, max_length, vocab_size, lowercase, tokenizer_dir)

    @staticmethod
    def _check_data_dir(data_dir: Any) -> Path:
        if not isinstance(data_dir, (str, Path)) or not Path(data_dir).expanduser().is_dir():
            raise ConfigError("data_dir", data_dir, "no such folder; point it at the folder holding the CoNLL files")
        return Path(data_dir).expanduser().resolve()

    def _check_file_name(self, key: str, name: Any) -> Path | None:
        if name is None:
            return None
        path = self.data_dir / str(name)
        if not isinstance(name, str) or not path.is_file():
            raise ConfigError(key, name, f"no such file: {path} (file names are relative to data_dir)")
        return path

    def _read(self) -> dict[str, TaggedSentences]:
        read = {split: read_conll(path, SPLIT_FILES[split]) for split, path in self.split_files.items() if path}
        if "val" not in read:
            size = int(self.val_fraction * len(read["train"]))
            if size < 1 or size >= len(read["train"]):
                raise ConfigError(
                    "val_fraction",
                    self.val_fraction,
                    f"draws {size} of {len(read['train'])} training sentences: the validation split "
                    "and the training split each need one at least",
                )
            read["val"], read["train"] = _random_split(read["train"], size, self.split_seed)
        return {split: read[split] for split in SPLIT_FILES}

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor]]:
        read = self._read()
        names = list(self.tag_names) if self.tag_names else sorted_tags(read["train"])
        ids = {split: tag_ids(self._file_key(split), self._path(split), s, names) for split, s in read.items()}
        # The vocabulary of a WordPiece trained here comes from every training sentence, before
        # max_train_samples subsets them (as for text classification).
        self.tokenizer = self.load_tokenizer([" ".join(words) for words in read["train"].words])
        if self.max_train_samples is not None and self.max_train_samples < len(read["train"]):
            read["train"], _ = _random_split(read["train"], self.max_train_samples, self.split_seed)
            ids["train"] = tag_ids("train_file", self._path("train"), read["train"], names)
        self.label_names, self.num_classes = names, len(names)
        self.texts = {split: [" ".join(words) for words in sentences.words] for split, sentences in read.items()}
        self.rows_key = content_key(
            {
                "format": ROWS_FORMAT,
                "label_names": names,
                "words": {split: texts_key(split, ["\t".join(w) for w in s.words]) for split, s in read.items()},
                "tags": {split: texts_key(split, [" ".join(map(str, t)) for t in tags]) for split, tags in ids.items()},
            }
        )
        splits = {}
        for split, sentences in read.items():
            encoded = encode_tagged(self.tokenizer, sentences.words, ids[split], self.max_length)
            if encoded.cut_words:
                log.warning(
                    "%s: %d words past data.max_length=%d tokens carry no label (not trained on, not scored)",
                    split,
                    encoded.cut_words,
                    self.max_length,
                )
            if encoded.unknown_words:
                log.info(
                    "%s: %d words the tokenizer drops whole are read as its unknown token", split, encoded.unknown_words
                )
            splits[split] = (encoded.inputs, encoded.labels)
        log.info(
            "token classification data %s: %s sentences, %d tags",
            self.data_dir,
            {split: len(sentences) for split, sentences in read.items()},
            self.num_classes,
        )
        return splits

    def _file_key(self, split: str) -> str:
        # A carved validation split is read from the training file.
        return SPLIT_FILES[split] if self.split_files[split] is not None else "train_file"

    def _path(self, split: str) -> Path:
        return self.split_files[split] or self.split_files["train"]

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {**super().model_kwargs, "task": TASK}
