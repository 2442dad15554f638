"""Sentences of tagged words from CoNLL-style files: one ``token<TAB>tag`` a line, a blank line
between sentences (WNUT-17, Derczynski et al. 2017; CoNLL-2003 with its extra columns cut to
two). A line holding only whitespace is blank too: WNUT-17's training file ends most of its
sentences with a lone tab.

Tags are BIO (``O``, ``B-<type>``, ``I-<type>``), the scheme the entity-level metric
(seqeval, evaluation/entity_metrics.py) reads. A malformed file stops the run with one line
naming its config key, the file and the line number: a line with no tab, an empty token or
tag, a tag outside the label set, a file without sentences.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillab.core.config import ConfigError

# O, or B-/I- and a type: what seqeval's entity chunks are made of.
BIO_TAG = re.compile(r"^(O|[BI]-\S+)$")


@dataclass(frozen=True)
class TaggedSentences:
    """One file's sentences: ``words[i]`` and ``tags[i]`` are sentence i's words and their tags."""

    words: list[list[str]]
    tags: list[list[str]]

    def __len__(self) -> int:
        return len(self.words)


def _decoded(key: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            key, str(path), f"is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}): save it as UTF-8"
        ) from None


def read_conll(path: Path, key: str) -> TaggedSentences:
    """Every sentence of ``path`` (``key``: its config key, named by errors)."""
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file")
    words: list[list[str]] = []
    tags: list[list[str]] = []
    sentence: list[tuple[str, str]] = []
    for number, line in enumerate(_decoded(key, path).splitlines(), start=1):
        if not line.strip():
            if sentence:
                words.append([w for w, _ in sentence])
                tags.append([t for _, t in sentence])
                sentence = []
            continue
        if "\t" not in line:
            raise ConfigError(key, str(path), f"line {number} has no tab between token and tag: {line[:60]!r}")
        # The tag is the last column (CoNLL-2003's POS and chunk columns sit between).
        token, tag = line.split("\t", 1)[0], line.rsplit("\t", 1)[1].strip()
        if not token.strip() or not tag:
            raise ConfigError(key, str(path), f"line {number} has an empty {'token' if tag else 'tag'}: {line[:60]!r}")
        sentence.append((token, tag))
    if sentence:
        words.append([w for w, _ in sentence])
        tags.append([t for _, t in sentence])
    if not words:
        raise ConfigError(key, str(path), "has no sentences (token<TAB>tag lines, a blank line between sentences)")
    return TaggedSentences(words, tags)


def check_tag_names(labels: Any) -> tuple[str, ...] | None:
    """``data.labels``: null (the sorted training tags), or a list of distinct BIO tags."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or not labels:
        raise ConfigError("labels", labels, "must be a non-empty list of BIO tags (O, B-<type>, I-<type>), or null")
    names = tuple(str(label).strip() for label in labels)
    wrong = [name for name in names if not BIO_TAG.match(name)]
    if wrong:
        raise ConfigError(
            "labels", list(names), f"has {wrong[0]!r}, not a BIO tag (O, B-<type>, I-<type>): seqeval reads BIO"
        )
    if len(set(names)) != len(names):
        raise ConfigError("labels", list(names), "must not repeat a tag")
    return names


def tag_ids(key: str, path: Path, sentences: TaggedSentences, names: Sequence[str]) -> list[list[int]]:
    """Each sentence's tags as ids into ``names``; a tag outside them is an error naming its line."""
    ids = {name: i for i, name in enumerate(names)}
    unknown = Counter(tag for sentence in sentences.tags for tag in sentence if tag not in ids)
    if unknown:
        tag, count = unknown.most_common(1)[0]
        more = f"; {len(unknown) - 1} other unknown tags" if len(unknown) > 1 else ""
        raise ConfigError(
            key,
            str(path),
            f"has tag {tag!r} on line {_line_of(path, tag)} ({count} {'word' if count == 1 else 'words'}{more}), "
            f"not among the labels "
            f"{list(names)}: add it to data.labels or fix the file",
        )
    return [[ids[tag] for tag in sentence] for sentence in sentences.tags]


def _line_of(path: Path, tag: str) -> int:
    """The first line of ``path`` whose tag is ``tag`` (for the error message only)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if "\t" in line and line.rsplit("\t", 1)[1].strip() == tag:
            return number
    return 0


def sorted_tags(sentences: TaggedSentences) -> list[str]:
    """The training file's tags: O first, then by entity type, B- before I-."""
    found = {tag for sentence in sentences.tags for tag in sentence}
    return sorted(found, key=lambda tag: (tag != "O", tag[2:], tag[:1]))
