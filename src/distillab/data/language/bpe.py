"""A byte-level BPE tokenizer (GPT-2 style) trained here, on a corpus's training texts.

For causal language models: every string is encoded losslessly (the 256 bytes are in the
alphabet, so there is no unknown token and ``decode(encode(text)) == text``). Trained with HF
``tokenizers`` and stored content-addressed like the WordPiece tokenizer
(:mod:`distillab.data.tokenizer`): the key hashes the texts and the settings, training runs
once under a lock, and later calls (other runs, other jobs of a sweep) load the stored file.
As with WordPiece, training is not bit-for-bit reproducible (ties between merges), so the
stored file is the vocabulary: keep it beside anything trained on its ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from distillab.core.config import ConfigError
from distillab.core.keys import texts_key
from distillab.data.tokenizer import stored_tokenizer

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
# EOS first, so that it is id 0 and padding id 1.
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)
BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
TOKENIZER_FILE = "tokenizer.json"
# Bump when the way a tokenizer is trained changes, so old entries are not reused.
FORMAT_VERSION = 1


def check_vocab_size(vocab_size: int) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(
            "vocab_size",
            vocab_size,
            f"must be an integer >= {MIN_VOCAB_SIZE} "
            f"({BYTE_ALPHABET_SIZE} bytes + {len(SPECIAL_TOKENS)} special tokens)",
        )
    return vocab_size


def bpe_key(texts: Sequence[str], vocab_size: int) -> str:
    """Stable sha256 (shortened) of the training texts and the settings."""
    return texts_key(f"bytebpe-v{FORMAT_VERSION}|{vocab_size}|{'|'.join(SPECIAL_TOKENS)}", texts)


def build_bpe(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """Train (no storage) a byte-level BPE of at most ``vocab_size`` tokens (fewer if the
    texts hold fewer merges), the special tokens first."""
    check_vocab_size(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: no space is added before a text, so decoding gives it back exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return tokenizer


def train_bpe(texts: Sequence[str], vocab_size: int, root: str | Path) -> Tokenizer:
    """The byte-level BPE stored for these texts and ``vocab_size`` under
    ``root/<key>/tokenizer.json``, trained and stored first if there is none (once: parallel
    jobs wait on a lock and then load it; a corrupt entry is trained again)."""
    check_vocab_size(vocab_size)
    texts = list(texts)
    return stored_tokenizer(
        Path(root).expanduser(),
        bpe_key(texts, vocab_size),
        lambda: build_bpe(texts, vocab_size),
        "a byte-level BPE",
        len(texts),
    )
