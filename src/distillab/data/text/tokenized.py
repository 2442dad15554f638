"""Text tokenized for a model: by a WordPiece vocabulary trained on the training split and
stored in ``tokenizer_dir`` for every later run, or by a pretrained model's own tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import Tensor

from distillab.core.config import ConfigError, check_int
from distillab.data.abilities import LabelledTexts, TakesTokenizer
from distillab.data.row_identity import KeyedByRows
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.data.text.files import check_bool, check_split_knobs
from distillab.data.tokenizer import encode, load_or_train_wordpiece, tokenizer_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizerSettings:
    max_length: int
    vocab_size: int
    lowercase: bool
    tokenizer_dir: Path


def tokenizer_settings(max_length: int, vocab_size: int, lowercase: bool, tokenizer_dir: str) -> TokenizerSettings:
    # 3 tokens at least: [CLS], one word piece, [SEP].
    return TokenizerSettings(
        check_int("max_length", max_length, low=3),
        check_int("vocab_size", vocab_size, low=16),
        check_bool("lowercase", lowercase),
        _check_dir("tokenizer_dir", tokenizer_dir),
    )


def _check_dir(key: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value) or Path(value).expanduser().is_file():
        raise ConfigError(key, value, "must be a folder path (created if missing)")
    return Path(value).expanduser()


def tokenize_splits(
    texts: Mapping[str, list[str]], tokenizer: Tokenizer, max_length: int
) -> dict[str, dict[str, Tensor]]:
    return {split: encode(tokenizer, split_texts, max_length) for split, split_texts in texts.items()}


class TokenizedTextDataModule(TensorDataModule, TakesTokenizer, KeyedByRows):
    """What every text data module shares: token-id inputs, cut per batch, from a tokenizer
    trained here or, after :meth:`use_tokenizer`, a pretrained model's own; a teacher store key
    from the rows read (``rows_key``, set by ``load_splits``), not from the files named; label
    names (``label_names``: of texts, or of tokens for token classification)."""

    dynamic_padding = True
    tokenizer: Tokenizer | None = None
    tokenizer_settings: TokenizerSettings
    max_length: int
    texts: dict[str, list[str]]  # each split's raw texts, set by load_splits
    label_names: list[str]  # in label-id order
    rows_key: str  # splits_fingerprint of the rows a teacher sees (no unlabelled ones), set by load_splits

    def keep_text_knobs(
        self,
        val_fraction: float,
        split_seed: int,
        max_length: int,
        vocab_size: int,
        lowercase: bool,
        tokenizer_dir: str,
    ) -> None:
        """How val is carved off the training texts and how they are tokenized, checked;
        subclasses call it from ``__init__``."""
        self.val_fraction, self.split_seed = check_split_knobs(val_fraction, split_seed)
        self.tokenizer_settings = tokenizer_settings(max_length, vocab_size, lowercase, tokenizer_dir)
        self.max_length = self.tokenizer_settings.max_length
        self.texts, self.label_names, self.tokenizer = {}, [], None

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

    def rows_fingerprint(self) -> str:
        self.setup()
        return self.rows_key


class LabelledTextDataModule(TokenizedTextDataModule, LabelledTexts):
    """Text data with one label per text, which a text baseline (bag of words) can read."""

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
