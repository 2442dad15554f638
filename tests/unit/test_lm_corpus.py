"""CorpusDataModule: documents split, a BPE trained on train only, blocks for next-token prediction."""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tokenizers import Tokenizer

from conftest import SHARED_DATA, config_error_key
from distillab.data import CorpusDataModule, TensorDataModule
from distillab.data.language.bpe import EOS_TOKEN, TOKENIZER_FILE
from distillab.data.language.corpus import pack_blocks, read_corpus_texts

AGNEWS_DEV = SHARED_DATA / "agnews" / "dev.tsv"
CONF = Path(__file__).resolve().parents[2] / "src" / "distillab" / "conf" / "data" / "lm_corpus.yaml"
needs_agnews = pytest.mark.skipif(
    not AGNEWS_DEV.is_file(), reason=f"real data absent: {AGNEWS_DEV} (../shared/data not beside the checkout)"
)
N_DOCS = 300
TINY = {
    "vocab_size": 300,
    "block_size": 16,
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "batch_size": 8,
    "eval_batch_size": 8,
}


@pytest.fixture(scope="module")
def agnews(tmp_path_factory) -> Path:
    """The first N_DOCS rows of AG News (text<TAB>label, no header)."""
    if not AGNEWS_DEV.is_file():
        pytest.skip(f"real data absent: {AGNEWS_DEV} (../shared/data not beside the checkout)")
    path = tmp_path_factory.mktemp("corpus") / "agnews.tsv"
    with AGNEWS_DEV.open(encoding="utf-8") as handle:
        path.write_text("".join(islice(handle, N_DOCS)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


def make(agnews: Path, tok_dir: Path, **knobs) -> CorpusDataModule:
    dm = CorpusDataModule(
        [{"path": str(agnews), "column": 0, "header": False}], tokenizer_dir=str(tok_dir), **{**TINY, **knobs}
    )
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def dm(agnews, tok_dir) -> CorpusDataModule:
    return make(agnews, tok_dir)


def test_blocks_are_next_token_pairs(dm):
    assert dm.task == "language_model" and TensorDataModule.task == "classification"
    for split, ds in dm.splits.items():
        ids, labels = ds.inputs["input_ids"], ds.labels
        assert ids.dtype == labels.dtype == torch.long and ids.shape == labels.shape and ids.shape[1] == 16
        assert torch.equal(labels[:, :-1], ids[:, 1:])
        assert torch.equal(ds.inputs["attention_mask"], torch.ones_like(ids))
        assert dm.tokens[split] == len(ds) * 16
        assert ids.min() >= 0 and ids.max() < dm.vocab_size_actual
    assert dm.num_classes == dm.vocab_size_actual <= 300
    assert dm.eos_id == dm.tokenizer.token_to_id(EOS_TOKEN)
    assert dm.model_kwargs == {"vocab_size": dm.vocab_size_actual, "context": 16, "eos_token_id": dm.eos_id}
    assert len(dm.fingerprint()) == 16


def test_documents_split_disjoint_and_train_packed_in_permuted_order(dm, agnews):
    index = {split: set(v.tolist()) for split, v in dm.document_index.items()}
    assert (
        not (index["train"] & index["val"])
        and not (index["train"] & index["test"])
        and not (index["val"] & index["test"])
    )
    assert index["train"] | index["val"] | index["test"] == set(range(N_DOCS))
    assert dm.documents == {"train": 240, "val": 30, "test": 30}
    # The training blocks are the training documents' stream in the permuted order (not the
    # file's): each block of 17 tokens is its 16 inputs and then its last label.
    texts = read_corpus_texts(agnews, 0)
    ids = [dm.tokenizer.encode(texts[i]).ids for i in dm.document_index["train"].tolist()]
    train = dm.splits["train"]
    blocks = torch.cat([train.inputs["input_ids"], train.labels[:, -1:]], dim=1)
    assert torch.equal(blocks, pack_blocks(ids, 17, dm.eos_id))
    assert dm.document_index["train"][0].item() != 0


def test_deterministic_for_a_seed_and_different_for_another(dm, agnews, tok_dir):
    again = make(agnews, tok_dir)
    for split in dm.splits:
        assert torch.equal(dm.splits[split].inputs["input_ids"], again.splits[split].inputs["input_ids"])
        assert torch.equal(dm.splits[split].labels, again.splits[split].labels)
    assert again.fingerprint() == dm.fingerprint()
    other = make(agnews, tok_dir, split_seed=1)
    assert not torch.equal(other.document_index["val"], dm.document_index["val"])


def test_stored_tokenizer_round_trips(dm, agnews, tok_dir):
    stored = [Tokenizer.from_file(str(p)) for p in tok_dir.rglob(TOKENIZER_FILE)]
    tokenizer = next(t for t in stored if t.to_str() == dm.tokenizer.to_str())
    texts = read_corpus_texts(agnews, 0)
    for i in dm.document_index["test"].tolist()[:20]:  # held-out text: bytes the BPE may not have merged
        assert tokenizer.decode(tokenizer.encode(texts[i]).ids) == texts[i]


def test_max_train_tokens_is_a_block_budget(dm, agnews, tok_dir, caplog):
    small = make(agnews, tok_dir, max_train_tokens=100)  # ceil(100 / 16) = 7 blocks
    assert len(small.splits["train"]) == 7 and small.tokens["train"] == 112
    assert torch.equal(small.splits["train"].labels, dm.splits["train"].labels[:7])
    assert torch.equal(small.splits["val"].labels, dm.splits["val"].labels)
    assert small.fingerprint() == dm.fingerprint()  # the vocabulary does not depend on the budget
    teacher = small.for_teacher()  # the budget is the student's: the teacher reads every block
    assert torch.equal(teacher.splits["train"].labels, dm.splits["train"].labels)
    assert len(small.splits["train"]) == 7 and teacher.splits["val"] is small.splits["val"]
    with caplog.at_level(logging.WARNING, logger="distillab.data.language.lm_corpus"):
        big = make(agnews, tok_dir, max_train_tokens=10**9)
    assert len(big.splits["train"]) == len(dm.splits["train"]) and "max_train_tokens" in caplog.text


def test_plain_text_sources_and_loader(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    lines = [" ".join(words[(i + j) % 10] for j in range(8)) for i in range(60)]
    (tmp_path / "a.txt").write_text("\n".join(lines[:40]) + "\n\n", encoding="utf-8")  # a blank line is no document
    (tmp_path / "b.txt").write_text("\n".join(lines[40:]), encoding="utf-8")
    dm = CorpusDataModule(
        [{"path": str(tmp_path / "a.txt"), "column": None}, OmegaConf.create({"path": str(tmp_path / "b.txt")})],
        vocab_size=300,
        block_size=8,
        val_fraction=0.2,
        test_fraction=0.2,
        batch_size=4,
        tokenizer_dir=str(tmp_path / "tok"),
    )
    dm.setup()
    assert sum(dm.documents.values()) == 60 and dm.documents["val"] == dm.documents["test"] == 12
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"inputs", "labels", "index"}
    assert (
        batch["inputs"]["input_ids"].shape == batch["inputs"]["attention_mask"].shape == batch["labels"].shape == (4, 8)
    )
    assert batch["index"].shape == (4,)


@pytest.mark.parametrize(
    "knobs, key",
    [
        ({"sources": []}, "sources"),
        ({"sources": "a.txt"}, "sources"),
        ({"sources": [{"path": "missing.txt"}]}, "sources[0].path"),
        ({"sources": [{"path": "GOOD"}, {"path": "GOOD", "colum": 0}]}, "sources[1].colum"),
        ({"sources": [{"path": "GOOD", "column": -1}]}, "sources[0].column"),
        ({"sources": [{"path": "GOOD", "column": "text", "header": False}]}, "sources[0].column"),
        ({"sources": [{"path": "GOOD", "delimiter": ";;"}]}, "sources[0].delimiter"),
        ({"block_size": 1}, "block_size"),
        ({"val_fraction": 0}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "test_fraction"),
        ({"max_train_tokens": 8, "block_size": 16}, "max_train_tokens"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"split_seed": -1}, "split_seed"),
    ],
)
def test_bad_knobs_name_their_key(tmp_path, knobs, key):
    good = tmp_path / "good.txt"
    good.write_text("one document\nanother one\n", encoding="utf-8")
    knobs = dict(knobs)  # the parametrized dict is shared; do not pop from it
    sources = knobs.pop("sources", [{"path": "GOOD"}])
    if isinstance(sources, list):
        sources = [{**s, "path": str(good if s["path"] == "GOOD" else tmp_path / s["path"])} for s in sources]
    assert config_error_key(lambda: CorpusDataModule(sources, tokenizer_dir=str(tmp_path / "tok"), **knobs)) == key


def test_a_split_without_a_block_names_its_knob(tmp_path):
    (tmp_path / "c.txt").write_text("\n".join(f"short document {i}" for i in range(20)), encoding="utf-8")
    make_dm = lambda **k: CorpusDataModule(
        [{"path": str(tmp_path / "c.txt")}], vocab_size=300, tokenizer_dir=str(tmp_path / "tok"), **k
    ).setup()
    assert config_error_key(lambda: make_dm(block_size=4, val_fraction=0.01, test_fraction=0.2)) == "val_fraction"
    assert config_error_key(lambda: make_dm(block_size=1000)) == "block_size"


@needs_agnews
def test_config_file_builds(tmp_path):
    cfg = OmegaConf.create(
        {"paths": {"data_root": str(SHARED_DATA), "teachers_dir": str(tmp_path)}, "data": OmegaConf.load(CONF)}
    )
    dm = instantiate(cfg.data)  # sources arrive as a ListConfig of DictConfigs; not set up (that reads it all)
    assert isinstance(dm, CorpusDataModule) and len(dm.sources) == 3 and dm.block_size == 128
    assert dm.sources[2].column == "sentence" and dm.sources[2].header is True
    assert dm.tokenizer_dir == tmp_path / "tokenizers"
