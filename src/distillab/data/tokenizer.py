"""A BERT-style WordPiece tokenizer trained here, on a data set's training texts.

Trained with HF ``tokenizers`` (Rust) and kept in a content-addressed folder: the key
hashes the texts and the settings, so every run and every job of a sweep over the same data
loads the same vocabulary instead of training it again, and a teacher stored by one run
reads the same token ids in the next. Training is not bit-for-bit reproducible: ties
between merges are broken in hash-map order (huggingface/tokenizers#1794), so two trainings
on the same texts can differ in a few hundred ids. The stored file is the vocabulary; a
teacher stored with one must not outlive it (keep ``tokenizer_dir`` beside the teacher store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch import Tensor

from distillab.core.entries import atomic_entry, file_lock, verify_entry
from distillab.core.keys import short_hash, texts_key

log = logging.getLogger(__name__)

# [PAD] first, so that id 0 is padding, as the BERT embedding's padding_idx expects.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_FILE = "tokenizer.json"
# Bump when the way a tokenizer is trained changes, so old entries are not reused.
FORMAT_VERSION = 1


def tokenizer_key(texts: Sequence[str], vocab_size: int, lowercase: bool) -> str:
    """Stable short hash of the training texts and the settings."""
    return texts_key(f"wordpiece-v{FORMAT_VERSION}|{vocab_size}|{lowercase}", texts)


def train_wordpiece(texts: Sequence[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """A WordPiece tokenizer of at most ``vocab_size`` tokens (fewer if the texts are small)
    that adds ``[CLS] ... [SEP]`` around every text."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    return tokenizer


def load_or_train_wordpiece(texts: Sequence[str], vocab_size: int, lowercase: bool, store_dir: str | Path) -> Tokenizer:
    """The tokenizer stored for these texts and settings under ``store_dir``, trained and
    stored first if there is none (once: parallel jobs wait on a lock and then load it)."""
    return stored_tokenizer(
        Path(store_dir).expanduser(),
        tokenizer_key(texts, vocab_size, lowercase),
        lambda: train_wordpiece(texts, vocab_size, lowercase),
        "a WordPiece tokenizer",
        len(texts),
    )


def stored_tokenizer(root: Path, key: str, train: Callable[[], Tokenizer], what: str, n_texts: int) -> Tokenizer:
    """``root/<key>/tokenizer.json`` if it is there and intact, else ``train()`` stored there
    (under a lock, so parallel jobs train it once; a damaged entry is trained again)."""
    entry = root / key
    with file_lock(root / f"{key}.lock"):
        if entry.exists():
            problem = verify_entry(entry)
            if problem is None:
                log.info("reusing tokenizer %s (%s)", entry / TOKENIZER_FILE, what)
                return Tokenizer.from_file(str(entry / TOKENIZER_FILE))
            log.warning("stored %s %s is %s; training it again", what, entry, problem)
        start = time.perf_counter()
        tokenizer = train()
        with atomic_entry(root, key, checked=(TOKENIZER_FILE,)) as tmp:
            tokenizer.save(str(tmp / TOKENIZER_FILE))
        log.info(
            "trained %s (vocab %d) on %d texts in %.1f s → %s",
            what,
            tokenizer.get_vocab_size(),
            n_texts,
            time.perf_counter() - start,
            entry / TOKENIZER_FILE,
        )
    return tokenizer


def pad_id_of(tokenizer: Tokenizer) -> int:
    """The id a tokenizer pads with: a pretrained one names its own (RoBERTa's <pad> is 1); ours is [PAD], 0."""
    return tokenizer.padding["pad_id"] if tokenizer.padding else 0


@contextmanager
def fixed_lengths(tokenizer: Tokenizer, max_length: int, pad: bool = True) -> Iterator[Tokenizer]:
    """Inside the block, truncate to ``max_length`` (and with ``pad``, pad to it); after it, the
    tokenizer's own settings again (the object may be shared)."""
    padding, truncation = tokenizer.padding, tokenizer.truncation
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length)
    # A pretrained tokenizer names its own pad token (RoBERTa's is <pad>); ours is [PAD], id 0.
    token = {k: padding[k] for k in ("pad_id", "pad_token")} if padding else {"pad_id": 0, "pad_token": "[PAD]"}
    if pad:
        tokenizer.enable_padding(**token, length=max_length)
    try:
        yield tokenizer
    finally:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        if padding is not None:
            tokenizer.enable_padding(**padding)
        if truncation is not None:
            tokenizer.enable_truncation(**truncation)


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    """``input_ids`` and ``attention_mask``, LongTensors of shape [N, max_length]: each text
    as ``[CLS] tokens [SEP]``, truncated (keeping ``[SEP]``) and padded with id 0."""
    with fixed_lengths(tokenizer, max_length):
        encodings = tokenizer.encode_batch(list(texts))
    shape = (len(encodings), max_length)
    return {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long).view(shape),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long).view(shape),
    }


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """SHA-256 of the tokenizer's JSON: a teacher trained on ids from one vocabulary must not be
    reused with another (WordPiece training is not bit-for-bit reproducible)."""
    return short_hash(tokenizer.to_str())
