"""data=lm_corpus with a pretrained model's tokenizer: no BPE trained, documents tokenized
without the tokenizer's per-text special tokens, joined by its eos token, its vocabulary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from distillab.core.config import ConfigError
from distillab.data import CorpusDataModule, TakesTokenizer
from distillab.data.tokenizer import tokenizer_hash

WORDS = [f"w{i}" for i in range(150)]
VOCAB = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
BOS, EOS = VOCAB["<s>"], VOCAB["</s>"]
BLOCK = 8


def save_tokenizer(folder: Path, shift: int = 0) -> Path:
    """A word-level tokenizer whose post-processor wraps every text in <s> ... </s> (as many
    pretrained ones add bos), saved as an HF folder; ``shift`` permutes the word ids."""
    vocab = {w: 3 + (i - 3 + shift) % len(WORDS) if i > 2 else i for w, i in VOCAB.items()}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(
        folder
    )
    return folder / "tokenizer.json"


def documents(n: int = 40) -> list[str]:
    return [" ".join(f"w{(3 * d + k) % 150}" for k in range(1 + d % 5)) for d in range(n)]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(documents()) + "\n", encoding="utf-8")
    return path


def make(corpus: Path, tokenizer_json: Path | None, tmp_path: Path, **kw) -> CorpusDataModule:
    dm = CorpusDataModule(
        [{"path": str(corpus)}],
        vocab_size=300,
        block_size=BLOCK,
        val_fraction=0.2,
        test_fraction=0.2,
        tokenizer_dir=str(tmp_path / "bpe"),
        **kw,
    )
    if tokenizer_json is not None:
        dm.use_tokenizer(tokenizer_json)
    dm.setup()
    return dm


def stream_of(dm: CorpusDataModule, split: str) -> list[int]:
    """The ids the split's blocks were cut from: each block is inputs + the last label."""
    ds = dm.splits[split]
    return torch.cat([ds.inputs["input_ids"], ds.labels[:, -1:]], 1).flatten().tolist()


def test_documents_are_joined_by_the_pretrained_eos_without_per_text_specials(corpus, tmp_path, caplog):
    assert isinstance(make(corpus, None, tmp_path), TakesTokenizer)
    with caplog.at_level(logging.INFO, logger="distillab.data.language.lm_corpus"):
        dm = make(corpus, save_tokenizer(tmp_path / "tok"), tmp_path / "other")
    assert not (tmp_path / "other" / "bpe").exists()  # no BPE trained
    assert sum("vocab_size=300 is not used" in r.getMessage() for r in caplog.records) == 1
    docs = documents()
    for split in ("train", "val", "test"):
        expected: list[int] = []
        for j, d in enumerate(dm.document_index[split].tolist()):
            expected += ([EOS] if j else []) + [VOCAB[w] for w in docs[d].split()]
        got = stream_of(dm, split)
        assert got == expected[: len(got)] and len(expected) - len(got) < BLOCK + 1
        assert BOS not in got
    ds = dm.splits["train"]
    assert torch.equal(ds.inputs["input_ids"][:, 1:], ds.labels[:, :-1])  # labels are the next tokens
    assert dm.model_kwargs == {"vocab_size": len(VOCAB), "context": BLOCK, "eos_token_id": EOS}


def test_the_fingerprint_is_the_pretrained_tokenizers(corpus, tmp_path):
    first = save_tokenizer(tmp_path / "a")
    dm = make(corpus, first, tmp_path)
    assert dm.fingerprint() == tokenizer_hash(Tokenizer.from_file(str(first)))
    assert make(corpus, save_tokenizer(tmp_path / "b", shift=7), tmp_path).fingerprint() != dm.fingerprint()
    assert make(corpus, None, tmp_path).fingerprint() != dm.fingerprint()


def test_a_tokenizer_config_without_an_eos_token_is_an_error(corpus, tmp_path):
    tokenizer_json = save_tokenizer(tmp_path / "tok")
    config = tmp_path / "tok" / "tokenizer_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "eos_token"}))
    with pytest.raises(ConfigError) as err:
        make(corpus, tokenizer_json, tmp_path)
    assert err.value.key == "tokenizer" and "eos_token" in str(err.value)


def test_use_tokenizer_after_setup_is_refused(corpus, tmp_path):
    dm = make(corpus, save_tokenizer(tmp_path / "tok"), tmp_path)
    with pytest.raises(RuntimeError):
        dm.use_tokenizer(tmp_path / "tok" / "tokenizer.json")
