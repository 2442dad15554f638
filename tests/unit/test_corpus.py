"""Causal-LM groundwork: byte-level BPE training/storage and corpus packing."""

from __future__ import annotations

import time

import pytest
import torch

from conftest import SHARED_DATA, config_error_key
from distillab.core.entries import MANIFEST
from distillab.data.language import bpe as bpe_module
from distillab.data.language.bpe import (
    EOS_TOKEN,
    MIN_VOCAB_SIZE,
    PAD_TOKEN,
    TOKENIZER_FILE,
    train_bpe,
)
from distillab.data.language.corpus import pack_blocks, read_corpus_texts

TEXTS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog met on a mat",
    "naïve café — 日本語 🙂",
] * 5


def test_pack_blocks_by_hand():
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, eos_id=0)
    # 1 2 3 0 | 4 5 0 6 | 7 8 9 (dropped)
    assert blocks.dtype == torch.long
    assert torch.equal(blocks, torch.tensor([[1, 2, 3, 0], [4, 5, 0, 6]]))


def test_pack_blocks_edges():
    assert pack_blocks([[1, 2]], block_size=4, eos_id=0).shape == (0, 4)
    assert pack_blocks([], block_size=4, eos_id=0).shape == (0, 4)
    assert torch.equal(pack_blocks([[1, 2], [3]], block_size=2, eos_id=9), torch.tensor([[1, 2], [9, 3]]))
    assert config_error_key(lambda: pack_blocks([[1]], block_size=0, eos_id=0)) == "block_size"


@pytest.mark.parametrize(
    "text",
    [
        "the cat sat on the mat.",
        "  Leading space, tabs\tand\nnewlines ",
        "naïve café — 日本語 🙂 Ωmega",
        "zebra quokka xylophone",
    ],
)
def test_bpe_round_trip(tmp_path, text):
    tok = train_bpe(TEXTS, 300, tmp_path)
    assert tok.decode(tok.encode(text).ids) == text


def test_bpe_special_tokens_and_vocab_size(tmp_path):
    tok = train_bpe(TEXTS, 300, tmp_path)
    assert tok.token_to_id(EOS_TOKEN) == 0 and tok.token_to_id(PAD_TOKEN) == 1
    assert MIN_VOCAB_SIZE < tok.get_vocab_size() <= 300  # the bytes, the specials and some merges
    for bad in (100, MIN_VOCAB_SIZE - 1, 300.0):
        assert config_error_key(lambda bad=bad: train_bpe(TEXTS, bad, tmp_path)) == "vocab_size"


def test_bpe_trained_once(tmp_path, monkeypatch):
    first = train_bpe(TEXTS, 300, tmp_path)
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    stored = entry / TOKENIZER_FILE
    assert stored.is_file() and (entry / MANIFEST).is_file()
    mtime = stored.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(bpe_module, "build_bpe", no_training)
    second = train_bpe(TEXTS, 300, tmp_path)
    assert stored.stat().st_mtime_ns == mtime
    assert second.get_vocab() == first.get_vocab()
    # Other texts or settings: another entry.
    monkeypatch.undo()
    train_bpe(TEXTS[:-1], 300, tmp_path)
    train_bpe(TEXTS, 301, tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3


def test_bpe_corrupt_entry_is_retrained(tmp_path):
    train_bpe(TEXTS, 300, tmp_path)
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / TOKENIZER_FILE).write_text("{}")
    tok = train_bpe(TEXTS, 300, tmp_path)
    assert tok.decode(tok.encode("the cat").ids) == "the cat"


def test_read_corpus_texts_plain_and_columns(tmp_path):
    plain = tmp_path / "corpus.txt"
    plain.write_text("first doc\n\n  second\tdoc  \n")
    assert read_corpus_texts(plain) == ["first doc", "second\tdoc"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("sentence\tlabel\nhello there\t1\nbye\t0\n")
    assert read_corpus_texts(tsv, "sentence") == ["hello there", "bye"]
    assert read_corpus_texts(tsv, 0, header=True) == ["hello there", "bye"]
    assert config_error_key(lambda: read_corpus_texts(tmp_path / "missing.txt")) == "path"


SST2_TRAIN = SHARED_DATA / "sst2" / "train.tsv"
AGNEWS_DEV = SHARED_DATA / "agnews" / "dev.tsv"


@pytest.mark.skipif(
    not SST2_TRAIN.is_file(), reason=f"real data absent: {SST2_TRAIN} (../shared/data not beside the checkout)"
)
def test_real_sst2_bpe_and_blocks(tmp_path):
    texts = read_corpus_texts(SST2_TRAIN, "sentence")[:2000]
    assert len(texts) == 2000
    start = time.perf_counter()
    tok = train_bpe(texts, 1000, tmp_path)
    assert time.perf_counter() - start < 5
    assert tok.get_vocab_size() == 1000
    ids = [e.ids for e in tok.encode_batch(texts)]
    assert all(tok.decode(i) == t for i, t in zip(ids[:200], texts[:200]))
    eos = tok.token_to_id(EOS_TOKEN)
    blocks = pack_blocks(ids, 64, eos)
    total = sum(map(len, ids)) + len(ids) - 1
    assert blocks.shape == (total // 64, 64)
    assert blocks.min() >= 0 and blocks.max() < 1000
    # The blocks are the stream, in order: the first document then EOS.
    assert blocks.flatten()[: len(ids[0]) + 1].tolist() == ids[0] + [eos]


@pytest.mark.skipif(
    not AGNEWS_DEV.is_file(), reason=f"real data absent: {AGNEWS_DEV} (../shared/data not beside the checkout)"
)
def test_real_agnews_column_without_header():
    texts = read_corpus_texts(AGNEWS_DEV, 0)
    assert len(texts) == 10_001 and not any(t in {"World", "Sports", "Business", "Sci/Tech"} for t in texts[:50])
