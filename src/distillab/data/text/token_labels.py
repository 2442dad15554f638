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

import torch
from tokenizers import Encoding, Tokenizer
from torch import Tensor

from distillab.data.tokenizer import fixed_lengths

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
    with fixed_lengths(tokenizer, max_length):
        encodings = tokenizer.encode_batch(sentences, is_pretokenized=True)
        for i, encoding in enumerate(encodings):
            dropped = _dropped_words(encoding, len(sentences[i]))
            if dropped and unk is not None:
                unknown += len(dropped)
                sentences[i] = [unk if j in dropped else word for j, word in enumerate(sentences[i])]
                encodings[i] = tokenizer.encode(sentences[i], is_pretokenized=True)
    labels, cut = [], 0
    for encoding, sentence_tags in zip(encodings, tags):
        labels.append(first_subtoken_labels(encoding.word_ids, sentence_tags))
        cut += len(sentence_tags) - len({w for w in encoding.word_ids if w is not None})
    shape = (len(encodings), max_length)
    inputs = {
        "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long).view(shape),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long).view(shape),
    }
    return TaggedEncoding(inputs, torch.tensor(labels, dtype=torch.long).view(shape), cut, unknown)


def _dropped_words(encoding: Encoding, n_words: int) -> set[int]:
    """The words with no token that truncation does not explain: every missing word of a sentence
    that fits, those before the last word kept of one that was cut."""
    present = {w for w in encoding.word_ids if w is not None}
    end = n_words if not encoding.overflowing else max(present, default=-1) + 1
    return set(range(end)) - present
