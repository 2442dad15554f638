"""Word tags carried onto sub-word tokens by the first-sub-token rule (Devlin et al. 2019, §5.3:
"we use the representation of the first sub-token as the input to the token-level classifier").

A word split into pieces (``Empire`` -> ``em ##pire``) is labelled once, at its first piece; its
other pieces, the special tokens (``[CLS]``, ``[SEP]``) and padding get IGNORE_INDEX, which no
loss term and no metric reads. Each word is then predicted exactly once, at its first piece, so
the predictions map back to the words one to one and an entity-level score over the words is
the one the data's own annotation defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from torch import Tensor

from distillab.data.tokenizer import fixed_lengths, pad_id_of

IGNORE_INDEX = -100  # F.cross_entropy's ignore_index: what losses/kd.py and every metric skip


def first_subtoken_labels(word_ids: Sequence[int | None], tags: Sequence[int]) -> list[int]:
    """Each token position's label: ``tags[w]`` at the first token of word w, IGNORE_INDEX at
    its other tokens and at positions of no word (``None``: special tokens, padding)."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else tags[word])
        previous = word
    return labels


@dataclass(frozen=True)
class TaggedEncoding:
    inputs: dict[str, Tensor]  # input_ids, attention_mask [N, max_length]
    labels: Tensor  # [N, max_length]: a word's tag at its first token, else IGNORE_INDEX
    cut_words: int  # words past max_length: no position carries their tag (not trained on, not scored)
    unknown_words: int  # words the tokenizer drops whole (a zero-width character), read as its unknown token


def _unknown_token(tokenizer: Tokenizer) -> str | None:
    return getattr(tokenizer.model, "unk_token", None)


def encode_tagged(
    tokenizer: Tokenizer, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]], max_length: int
) -> TaggedEncoding:
    """Sentences of words (already split: ``is_pretokenized``) as ``[CLS] pieces [SEP]`` token ids,
    truncated and padded to ``max_length``, with their tags on the first piece of each word.

    A word the tokenizer turns into no token at all (its normaliser strips zero-width and control
    characters) would lose its tag; it is read as the tokenizer's unknown token instead, so every
    word keeps a position when the sentence fits."""
    sentences = [list(sentence) for sentence in words]
    unk, unknown = _unknown_token(tokenizer), 0
    # Truncated, not padded: padding is written below, so each encoding is a sentence long.
    with fixed_lengths(tokenizer, max_length, pad=False):
        encodings = tokenizer.encode_batch(sentences, is_pretokenized=True)
        for i, encoding in enumerate(encodings):
            dropped = _dropped_words(encoding, len(sentences[i]))
            if dropped and unk is not None:
                unknown += len(dropped)
                sentences[i] = [unk if j in dropped else word for j, word in enumerate(sentences[i])]
                encodings[i] = tokenizer.encode(sentences[i], is_pretokenized=True)
    ids = np.full((len(encodings), max_length), pad_id_of(tokenizer), dtype=np.int64)
    mask = np.zeros((len(encodings), max_length), dtype=np.int64)
    labels = np.full((len(encodings), max_length), IGNORE_INDEX, dtype=np.int64)
    cut = 0
    for i, (encoding, sentence_tags) in enumerate(zip(encodings, tags)):
        word_ids, n = encoding.word_ids, len(encoding.ids)
        ids[i, :n], mask[i, :n] = encoding.ids, 1
        labels[i, :n] = first_subtoken_labels(word_ids, sentence_tags)
        cut += len(sentence_tags) - len({w for w in word_ids if w is not None})
    inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    return TaggedEncoding(inputs, torch.from_numpy(labels), cut, unknown)


def _dropped_words(encoding: Encoding, n_words: int) -> set[int]:
    """The words with no token that truncation does not explain: every missing word of a sentence
    that fits, those before the last word kept of one that was cut."""
    present = {w for w in encoding.word_ids if w is not None}
    end = n_words if not encoding.overflowing else max(present, default=-1) + 1
    return set(range(end)) - present
