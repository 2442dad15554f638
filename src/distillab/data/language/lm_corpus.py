"""Causal language modelling on plain-text corpora: documents read from one or more files,
tokenized by a byte-level BPE trained here (or, after ``use_tokenizer``, by a pretrained model's
own tokenizer), packed into fixed-length blocks.

Documents, not blocks, are split into train/val/test (a permutation drawn with
``split_seed``), so no held-out text is ever seen in training. The BPE is trained on the
training documents only, before ``max_train_tokens`` cuts them, so the vocabulary does not
change with the token budget; it is stored in ``tokenizer_dir`` for every later run. Each
sample is a block of ``block_size + 1`` tokens: ``input_ids`` its first ``block_size``,
``labels`` its last ``block_size`` (already shifted: logits [B, L, V] line up with labels
[B, L] with no shift in the loss). Blocks are full, so the attention mask is all ones.

With a pretrained tokenizer (a pretrained model reads only the ids of its own vocabulary) no
BPE is trained: documents are tokenized without special tokens and joined by the tokenizer's
eos token (``eos_token`` of the ``tokenizer_config.json`` beside its ``tokenizer.json``), and
the vocabulary is the tokenizer's (``vocab_size`` is not used).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from tokenizers import Tokenizer
from torch import Tensor

from distillab.core.config import ConfigError, check_int, check_number
from distillab.core.keys import texts_key
from distillab.data.abilities import TakesTokenizer
from distillab.data.language.bpe import EOS_TOKEN, check_vocab_size, train_bpe
from distillab.data.language.corpus import pack_blocks, read_corpus_texts
from distillab.data.row_files import check_format, check_saved_folder
from distillab.data.row_identity import KeyedByRows
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule
from distillab.data.text.table import Column
from distillab.data.tokenizer import tokenizer_hash

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SOURCE_KEYS = ("path", "column", "header", "delimiter", "format")


@dataclass(frozen=True)
class CorpusSource:
    """One file (or ``save_to_disk`` folder) of documents (see
    :func:`distillab.data.language.corpus.read_corpus_texts`)."""

    path: Path
    column: Column | None = None
    header: bool | None = None
    delimiter: str | None = None
    format: str | None = None


def check_source(i: int, source: Any) -> CorpusSource:
    """``sources[i]`` checked: a mapping of the known keys, an existing file (or ``save_to_disk``
    folder), well-formed columns, a known format."""
    key = f"sources[{i}]"
    if isinstance(source, DictConfig):
        source = OmegaConf.to_container(source, resolve=True)
    if not isinstance(source, Mapping):
        raise ConfigError(key, source, f"must be a mapping with keys {', '.join(SOURCE_KEYS)}")
    for name in source:
        if name not in SOURCE_KEYS:
            raise ConfigError(
                f"{key}.{name}", source[name], f"is not a key of a source (its keys: {', '.join(SOURCE_KEYS)})"
            )
    path, column = source.get("path"), source.get("column")
    header, delimiter = source.get("header"), source.get("delimiter")
    if isinstance(path, (str, Path)) and str(path) and Path(path).expanduser().is_dir():
        check_saved_folder(f"{key}.path", Path(path).expanduser().resolve())
    elif not isinstance(path, (str, Path)) or not str(path) or not Path(path).expanduser().is_file():
        raise ConfigError(f"{key}.path", path, "no such file")
    format = check_format(f"{key}.format", source.get("format"))
    if (
        column is not None
        and not (isinstance(column, str) and column)
        and (isinstance(column, bool) or not isinstance(column, int) or column < 0)
    ):
        raise ConfigError(
            f"{key}.column",
            column,
            "must be null (plain text, one document a line), a 0-based "
            "column index or a column name (with header=true)",
        )
    if header is not None and not isinstance(header, bool):
        raise ConfigError(f"{key}.header", header, "must be true, false or null (true when column is a name)")
    if isinstance(column, str) and header is False:
        raise ConfigError(
            f"{key}.column", column, "a column name needs header=true; without a header give a 0-based index"
        )
    if delimiter == "\\t":  # `...delimiter='\t'` on a command line arrives as backslash, t
        delimiter = "\t"
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(
            f"{key}.delimiter", delimiter, "must be one character, or null for tab in .tsv/.txt and comma in .csv"
        )
    return CorpusSource(Path(path).expanduser().resolve(), column, header, delimiter, format)


def pretrained_eos(tokenizer_file: Path) -> str:
    """The eos token named by the ``tokenizer_config.json`` (else ``special_tokens_map.json``)
    beside ``tokenizer_file``; a token given as ``{"content": ...}`` (older files) too."""
    folder = Path(tokenizer_file).parent
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = folder / name
        if config.is_file():
            eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
            eos = eos.get("content") if isinstance(eos, Mapping) else eos
            if isinstance(eos, str) and eos:
                return eos
    raise ConfigError(
        "tokenizer",
        str(folder),
        "names no eos_token in tokenizer_config.json or special_tokens_map.json: the documents' separator",
    )


def load_pretrained_tokenizer(tokenizer_file: Path) -> tuple[Tokenizer, int]:
    """The tokenizer of ``tokenizer_file`` (no padding, no truncation) and its eos id."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    eos = pretrained_eos(tokenizer_file)
    eos_id = tokenizer.token_to_id(eos)
    if eos_id is None:
        raise ConfigError("tokenizer", str(tokenizer_file), f"has no token {eos!r}, the eos_token its config names")
    return tokenizer, eos_id


class CorpusDataModule(TensorDataModule, TakesTokenizer, KeyedByRows):
    """Next-token prediction on the documents of ``sources``; see the module docstring."""

    # The documents, in read order, are what the store key hashes (rows_fingerprint).
    location_keys = ("sources",)

    task = "language_model"
    dynamic_padding = False  # every block is full: nothing to trim

    def __init__(
        self,
        sources: Sequence[Mapping[str, Any]],
        vocab_size: int = 8192,
        block_size: int = 128,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        max_train_tokens: int | None = None,
        tokenizer_dir: str = "outputs/teachers/tokenizers",
        batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        if isinstance(sources, ListConfig):
            sources = list(sources)
        if isinstance(sources, (str, bytes, Mapping)) or not isinstance(sources, Sequence) or not sources:
            raise ConfigError(
                "sources", sources, "must be a non-empty list of {path, column, header, delimiter, format}"
            )
        self.sources = tuple(check_source(i, source) for i, source in enumerate(sources))
        self.vocab_size = check_vocab_size(vocab_size)
        # 2 at least: a block of one input token would hold no context to predict from.
        self.block_size = check_int("block_size", block_size, low=2)
        self.val_fraction = check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
        self.test_fraction = check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                "test_fraction",
                test_fraction,
                f"val_fraction + test_fraction must be < 1 "
                f"(val_fraction={val_fraction}), leaving documents to train on",
            )
        self.split_seed = check_int("split_seed", split_seed, low=0)
        if max_train_tokens is not None:
            max_train_tokens = check_int("max_train_tokens", max_train_tokens, low=self.block_size)
        self.max_train_tokens = max_train_tokens
        if (
            not isinstance(tokenizer_dir, (str, Path))
            or not str(tokenizer_dir)
            or Path(tokenizer_dir).expanduser().is_file()
        ):
            raise ConfigError("tokenizer_dir", tokenizer_dir, "must be a folder path (created if missing)")
        self.tokenizer_dir = Path(tokenizer_dir).expanduser()
        self.tokenizer: Tokenizer | None = None
        self.eos_id: int | None = None
        self.vocab_size_actual: int | None = None
        self.tokens: dict[str, int] = {}
        self.documents: dict[str, int] = {}
        # Positions of each split's documents in the read order (all sources concatenated).
        self.document_index: dict[str, Tensor] = {}

    def use_tokenizer(self, path: Path) -> None:
        """Tokenize with ``path`` (a pretrained model's ``tokenizer.json``) instead of training
        a BPE. Call before setup."""
        if self.splits:
            raise RuntimeError("use_tokenizer must be called before the data are set up")
        self.tokenizer_file = Path(path)

    def load_tokenizer(self, train_texts: Sequence[str]) -> tuple[Tokenizer, int]:
        """The pretrained tokenizer and its eos id after :meth:`use_tokenizer`, else a BPE
        trained on ``train_texts`` (stored) and its ``<|endoftext|>``."""
        if self.tokenizer_file is None:
            tokenizer = train_bpe(train_texts, self.vocab_size, self.tokenizer_dir)
            return tokenizer, tokenizer.token_to_id(EOS_TOKEN)
        tokenizer, eos_id = load_pretrained_tokenizer(self.tokenizer_file)
        log.info(
            "tokenizing with %s (eos %r between documents); data.vocab_size=%d is not used: the vocabulary is its %d",
            self.tokenizer_file,
            tokenizer.id_to_token(eos_id),
            self.vocab_size,
            tokenizer.get_vocab_size(),
        )
        return tokenizer, eos_id

    def split_documents(self, n: int) -> dict[str, Tensor]:
        """Document positions of each split, in the order of one permutation drawn with split_seed."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor]]:
        texts = [
            text
            for i, s in enumerate(self.sources)
            for text in read_corpus_texts(
                s.path,
                s.column,
                s.header,
                s.delimiter,
                s.format,
                key=f"sources[{i}].path",
                column_key=f"sources[{i}].column",
            )
        ]
        self.rows_key = texts_key("corpus", texts)  # the split is a function of these and split_seed
        index = self.split_documents(len(texts))
        docs = {split: [texts[i] for i in index[split].tolist()] for split in SPLITS}
        tokenizer, eos_id = self.load_tokenizer(docs["train"])
        # A pretrained tokenizer's post-processor may add bos/eos per text: the eos between
        # documents is added by pack_blocks, once.
        special = self.tokenizer_file is None
        out, tokens = {}, {}
        for split, key in zip(SPLITS, ("block_size", "val_fraction", "test_fraction")):
            encoded = tokenizer.encode_batch(docs[split], add_special_tokens=special) if docs[split] else []
            ids = [e.ids for e in encoded]
            blocks = pack_blocks(ids, self.block_size + 1, eos_id)
            if len(blocks) == 0:
                raise ConfigError(
                    key,
                    getattr(self, key),
                    f"leaves the {split} split {len(ids)} documents, "
                    f"{sum(map(len, ids))} tokens: not one block of block_size + 1 = "
                    f"{self.block_size + 1} tokens ({len(texts)} documents in all)",
                )
            if split == "train":
                self._full_train = blocks
            if split == "train" and self.max_train_tokens is not None:
                # The permuted order makes the first blocks a random sample of documents.
                wanted = math.ceil(self.max_train_tokens / self.block_size)
                if wanted > len(blocks):
                    log.warning(
                        "max_train_tokens=%d: the training split has only %d tokens (%d blocks); using them all",
                        self.max_train_tokens,
                        len(blocks) * self.block_size,
                        len(blocks),
                    )
                blocks = blocks[:wanted]
            inputs = blocks[:, :-1].contiguous()
            out[split] = ({"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, blocks[:, 1:].contiguous())
            tokens[split] = len(blocks) * self.block_size
        self.tokenizer, self.eos_id = tokenizer, eos_id
        self.vocab_size_actual = self.num_classes = tokenizer.get_vocab_size()
        self.tokens, self.document_index = tokens, index
        self.documents = {split: len(docs[split]) for split in SPLITS}
        log.info(
            "corpus of %d sources: documents %s, tokens %s, vocabulary %d",
            len(self.sources),
            self.documents,
            self.tokens,
            self.vocab_size_actual,
        )
        return {split: out[split] for split in SPLITS}

    def for_teacher(self) -> TensorDataModule:
        """The teacher trains on the whole training split: ``max_train_tokens`` is the student's
        budget (a teacher trained on more text than its students, as in practice)."""
        view = super().for_teacher()
        if self.max_train_tokens is None or len(self._full_train) == len(view.splits["train"]):
            return view
        view = copy.copy(view)
        inputs = self._full_train[:, :-1].contiguous()
        view.splits = {
            **view.splits,
            "train": IndexedTensorDataset(
                {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, self._full_train[:, 1:].contiguous()
            ),
        }
        return view

    @property
    def model_kwargs(self) -> dict[str, int]:
        self.setup()
        return {"vocab_size": self.vocab_size_actual, "context": self.block_size, "eos_token_id": self.eos_id}

    def fingerprint(self) -> str | None:
        self.setup()
        return tokenizer_hash(self.tokenizer)

    def rows_fingerprint(self) -> str:
        self.setup()
        return self.rows_key
