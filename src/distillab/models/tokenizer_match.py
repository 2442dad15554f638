"""When two pretrained models read the same token ids: their tokenizers compared by meaning.

Two tokenizers are the same for distillation when every token maps to the same id (the
vocabulary, added tokens included) and they agree on the special tokens (bos, eos, pad, unk and
the added tokens marked special). Their files may still differ byte for byte (a saved
``model_max_length``, the order of JSON keys, a newer transformers), which is not a difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

SPECIAL_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")
# Where an HF folder names its special tokens: tokenizer_config.json (transformers 5), and
# special_tokens_map.json (folders saved by transformers 4).
SPECIAL_FILES = ("special_tokens_map.json", "tokenizer_config.json")


@dataclass(frozen=True)
class TokenizerFacts:
    """What decides the ids a tokenizer gives: ``vocab`` (token → id, added tokens included),
    ``special`` (the names of :data:`SPECIAL_NAMES` the folder declares → their token) and
    ``added_special`` (the added tokens marked special)."""

    vocab: Mapping[str, int]
    special: Mapping[str, str]
    added_special: frozenset[str]


def _token_text(value: Any) -> str | None:
    # transformers 5 writes a special token as its text; 4 sometimes as an AddedToken dict.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_facts(tokenizer_json: Path) -> TokenizerFacts:
    """The facts of ``tokenizer_json``, with the special token names declared beside it."""
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    special: dict[str, str] = {}
    for name in SPECIAL_FILES:  # tokenizer_config.json last: it wins
        path = tokenizer_json.parent / name
        if path.is_file():
            declared = json.loads(path.read_text(encoding="utf-8"))
            for key in SPECIAL_NAMES:
                text = _token_text(declared.get(key))
                if text is not None:
                    special[key] = text
    added = tokenizer.get_added_tokens_decoder().values()
    return TokenizerFacts(
        vocab=tokenizer.get_vocab(with_added_tokens=True),
        special=special,
        added_special=frozenset(token.content for token in added if token.special),
    )


def _examples(tokens: list[str], count: int = 3) -> str:
    shown = ", ".join(repr(t) for t in tokens[:count])
    return shown + (", ..." if len(tokens) > count else "")


def _vocabulary_difference(a: Mapping[str, int], b: Mapping[str, int]) -> str:
    common = a.keys() & b.keys()
    moved = sum(a[token] != b[token] for token in common)
    only_a = sorted(a.keys() - common, key=a.__getitem__)
    only_b = sorted(b.keys() - common, key=b.__getitem__)
    parts = [f"vocabularies differ: {len(a):,} vs {len(b):,} tokens"]
    if moved:
        parts.append(f"{moved:,} of the {len(common):,} tokens in common map to other ids")
    if only_a:
        parts.append(f"{len(only_a):,} only in the first ({_examples(only_a)})")
    if only_b:
        parts.append(f"{len(only_b):,} only in the second ({_examples(only_b)})")
    return "; ".join(parts)


def tokenizer_difference(a: TokenizerFacts, b: TokenizerFacts) -> str | None:
    """None when ``a`` and ``b`` give the same ids and the same special tokens, else what
    differs, in one line ("vocabularies differ: 49,152 vs 50,257 tokens; ...", "eos_token:
    '<|im_end|>' vs '<|endoftext|>'"). A special token one side does not declare is no
    difference (a bare ``tokenizer.json`` declares none)."""
    parts = []
    if dict(a.vocab) != dict(b.vocab):
        parts.append(_vocabulary_difference(a.vocab, b.vocab))
    for name in SPECIAL_NAMES:
        x, y = a.special.get(name), b.special.get(name)
        if x is not None and y is not None and x != y:
            parts.append(f"{name}: {x!r} vs {y!r}")
    if a.added_special != b.added_special:
        only_a, only_b = sorted(a.added_special - b.added_special), sorted(b.added_special - a.added_special)
        sides = [f"{_examples(only_a)} only in the first"] if only_a else []
        sides += [f"{_examples(only_b)} only in the second"] if only_b else []
        parts.append(f"special tokens differ: {' and '.join(sides)}")
    return "; ".join(parts) or None
