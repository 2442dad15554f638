"""Text data from TSV/CSV files: reading, label ids, the stored WordPiece tokenizer, subsets,
several domains, and a BERT forward on a real batch.

Small files are cut from the real SST-2 and AG News rows in the project's shared data
folder; the tests skip when it is absent (a fresh clone has no ``../shared``).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from distillab.core.config import ConfigError
from distillab.data import TextClassificationDataModule, TextDomainsDataModule
from distillab.data.text.table import read_table
from distillab.data.tokenizer import encode, load_or_train_wordpiece
from distillab.models import build_bert

ROOT = Path(__file__).parents[2]
DATA = ROOT / ".." / "shared" / "data"
AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"needs the shared data file {path.resolve()} (absent outside the project's workspace)")
    return path


def head(path: Path, n: int, skip: int = 0) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [line for _, line in zip(range(skip + n), f)][skip:]


@pytest.fixture
def sst2_dir(tmp_path) -> Path:
    """train 1,500 / dev 300 / test 200 rows of SST-2 with its header."""
    train, test = shared("sst2", "train.tsv"), shared("sst2", "test.tsv")
    lines = head(train, 1801)
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.tsv").write_text("".join(lines[:1501]))
    (folder / "dev.tsv").write_text(lines[0] + "".join(lines[1501:]))
    (folder / "test.tsv").write_text("".join(head(test, 201)))
    return folder


@pytest.fixture
def agnews_dir(tmp_path) -> Path:
    """train 1,200 / test 400 rows of AG News, no header (some fields in CSV quotes)."""
    folder = tmp_path / "agnews"
    folder.mkdir()
    (folder / "dev.tsv").write_text("".join(head(shared("agnews", "dev.tsv"), 1200)))
    (folder / "test.tsv").write_text("".join(head(shared("agnews", "test.tsv"), 400)))
    return folder


def sst2(folder: Path, tokenizers: Path, **kw) -> TextClassificationDataModule:
    args = dict(
        data_dir=str(folder),
        train_file="train.tsv",
        val_file="dev.tsv",
        test_file="test.tsv",
        header=True,
        text_column="sentence",
        label_column="label",
        vocab_size=1000,
        max_length=32,
        tokenizer_dir=str(tokenizers),
        batch_size=16,
    )
    return TextClassificationDataModule(**{**args, **kw})


def agnews(folder: Path, tokenizers: Path, **kw) -> TextClassificationDataModule:
    args = dict(
        data_dir=str(folder),
        train_file="dev.tsv",
        test_file="test.tsv",
        labels=AGNEWS_LABELS,
        vocab_size=1500,
        max_length=64,
        tokenizer_dir=str(tokenizers),
        batch_size=16,
    )
    return TextClassificationDataModule(**{**args, **kw})


# -- reading tables --------------------------------------------------------------------------


def test_tsv_with_header_by_name_and_without_by_index(sst2_dir, agnews_dir):
    texts, labels = read_table(sst2_dir / "train.tsv", "sentence", "label", header=True)
    assert len(texts) == 1500 and set(labels) == {"0", "1"} and texts[0] == "when are bears bears and"
    by_index = read_table(sst2_dir / "train.tsv", 0, 1, header=True)
    assert by_index == (texts, labels)
    texts, labels = read_table(agnews_dir / "dev.tsv", 0, 1, header=False)
    assert len(texts) == 1200 and set(labels) == set(AGNEWS_LABELS)
    # AG News quotes fields holding '"' as CSV does; they come back unquoted, as the csv module reads them.
    with (agnews_dir / "dev.tsv").open(newline="") as f:
        assert texts == [row[0].strip() for row in csv.reader(f, delimiter="\t")]
    assert any('"' in t for t in texts) and not any('""' in t for t in texts)


def test_csv_quoting_txt_suffix_and_explicit_delimiter(agnews_dir, tmp_path):
    texts, labels = read_table(agnews_dir / "dev.tsv", 0, 1, header=False)
    assert sum("," in t for t in texts) > 100  # CSV must quote these
    with (tmp_path / "news.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("label", "text"), *zip(labels, texts)])
    assert read_table(tmp_path / "news.csv", "text", "label", header=True) == (texts, labels)
    (tmp_path / "news.txt").write_text("".join(f"{t}\t{y}\n" for t, y in zip(texts[:5], labels[:5])))
    assert read_table(tmp_path / "news.txt", 0, 1, header=False) == (texts[:5], labels[:5])
    (tmp_path / "news.data").write_text("".join(f"{y};{t}\n" for t, y in zip(["a, b", "c d"], ["x", "y"])))
    assert read_table(tmp_path / "news.data", 1, 0, header=False, delimiter=";") == (["a, b", "c d"], ["x", "y"])


def test_a_lone_quote_in_a_tsv_stays_on_its_line(tmp_path):
    (tmp_path / "q.tsv").write_text('sentence\tlabel\nhe said " no\t1\n" yes , really\t0\nfine\t1\n')
    assert read_table(tmp_path / "q.tsv", "sentence", "label", header=True) == (
        ['he said " no', '" yes , really', "fine"],
        ["1", "0", "1"],
    )


def test_table_errors_name_key_value_and_fix(sst2_dir, tmp_path):
    missing = tmp_path / "nope.tsv"
    with pytest.raises(ConfigError) as err:
        read_table(missing, 0, 1, header=False, key="train_file")
    assert err.value.key == "train_file" and err.value.value == str(missing.resolve())
    with pytest.raises(ConfigError) as err:
        read_table(sst2_dir / "train.tsv", "text", "label", header=True)
    assert err.value.key == "text_column" and "['sentence', 'label']" in str(err.value)
    with pytest.raises(ConfigError) as err:
        read_table(sst2_dir / "train.tsv", 0, 2, header=True)
    assert err.value.key == "label_column" and "line 2 has 2 columns" in str(err.value)
    with pytest.raises(ConfigError) as err:
        read_table(sst2_dir / "train.tsv", "sentence", 1, header=False)
    assert err.value.key == "text_column" and "header=true" in str(err.value)
    (tmp_path / "empty.tsv").write_text("")
    for header in (True, False):
        with pytest.raises(ConfigError, match="empty") as err:
            read_table(tmp_path / "empty.tsv", 0, 1, header=header, key="test_file")
        assert err.value.key == "test_file"
    (tmp_path / "short.tsv").write_text("a\t1\nb\t0\nno label here\n")
    with pytest.raises(ConfigError, match="line 3 has 1 columns"):
        read_table(tmp_path / "short.tsv", 0, 1, header=False)


# -- the data module -------------------------------------------------------------------------


def test_sst2_splits_labels_and_texts(sst2_dir, tmp_path):
    dm = sst2(sst2_dir, tmp_path / "tok")
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 1500, "val": 300, "test": 200}
    assert dm.label_names == ["0", "1"] and dm.num_classes == 2
    assert dm.model_kwargs == {"num_labels": 2, "vocab_size": dm.tokenizer.get_vocab_size(), "max_length": 32}
    texts, labels = read_table(sst2_dir / "test.tsv", 0, 1, header=True)
    assert dm.texts["test"] == texts
    assert dm.splits["test"].labels.tolist() == [int(y) for y in labels]


def test_explicit_label_order_and_stratified_val_carve(agnews_dir, tmp_path):
    dm = agnews(agnews_dir, tmp_path / "tok", val_fraction=0.25)
    dm.setup()
    assert dm.label_names == AGNEWS_LABELS
    _, raw = read_table(agnews_dir / "test.tsv", 0, 1, header=False)
    assert dm.splits["test"].labels.tolist() == [AGNEWS_LABELS.index(y) for y in raw]
    assert len(dm.splits["val"]) == 300 and len(dm.splits["train"]) == 900
    for split in ("train", "val"):  # each split holds the file's class proportions, to a sample
        counts = torch.bincount(dm.splits[split].labels, minlength=4) / len(dm.splits[split])
        whole = Counter(read_table(agnews_dir / "dev.tsv", 0, 1, header=False)[1])
        assert all(abs(counts[i] - whole[name] / 1200) < 0.01 for i, name in enumerate(AGNEWS_LABELS))
    inferred = agnews(agnews_dir, tmp_path / "tok", labels=None)
    inferred.setup()
    assert inferred.label_names == sorted(AGNEWS_LABELS)


def test_unknown_label_in_test_names_the_file_and_the_label(sst2_dir, tmp_path):
    (sst2_dir / "test.tsv").write_text("sentence\tlabel\ngood\t1\nmeh\tneutral\n")
    dm = sst2(sst2_dir, tmp_path / "tok")
    with pytest.raises(ConfigError) as err:
        dm.setup()
    assert err.value.key == "test_file" and err.value.value == str((sst2_dir / "test.tsv").resolve())
    assert "'neutral'" in str(err.value) and "['0', '1']" in str(err.value)


def test_knobs_are_checked_where_they_enter(sst2_dir, tmp_path):
    tok = tmp_path / "tok"
    cases = {
        "data_dir": dict(data_dir=str(tmp_path / "none")),
        "test_file": dict(test_file="missing.tsv"),
        "label_column": dict(label_column=-1),
        "text_column": dict(header=False),  # a column name without a header
        "labels": dict(labels=["0", "0"]),
        "max_train_samples": dict(max_train_samples=0),
        "max_length": dict(max_length=2),
        "vocab_size": dict(vocab_size="big"),
        "lowercase": dict(lowercase="yes"),
        "delimiter": dict(delimiter="::"),
        "val_fraction": dict(val_fraction=1.0),
    }
    for key, kw in cases.items():
        with pytest.raises(ConfigError) as err:
            sst2(sst2_dir, tok, **kw)
        assert err.value.key == key, kw
    with pytest.raises(ConfigError) as err:
        sst2(sst2_dir, tok, test_file="missing.tsv")
    assert str(sst2_dir.resolve() / "missing.tsv") in str(err.value)
    assert sst2(sst2_dir, tok, delimiter="\\t").files.delimiter == "\t"


def test_max_train_samples_is_stratified_seeded_and_keeps_the_vocabulary(sst2_dir, tmp_path):
    tok = tmp_path / "tok"
    full = sst2(sst2_dir, tok)
    full.setup()
    subsets = []
    for seed in (0, 0, 1):
        dm = sst2(sst2_dir, tok, max_train_samples=300, split_seed=seed)
        dm.setup()
        subsets.append(dm)
    ds = subsets[0].splits["train"]
    assert len(ds) == 300 and len(subsets[0].texts["train"]) == 300
    share = ds.labels.float().mean()
    assert abs(share - full.splits["train"].labels.float().mean()) < 0.01
    assert torch.equal(ds.inputs["input_ids"], subsets[1].splits["train"].inputs["input_ids"])
    assert not torch.equal(ds.inputs["input_ids"], subsets[2].splits["train"].inputs["input_ids"])
    # texts stay aligned with the tensors; val and test are untouched; one vocabulary for all
    again = encode(subsets[0].tokenizer, subsets[0].texts["train"], 32)["input_ids"]
    assert torch.equal(again, ds.inputs["input_ids"])
    assert torch.equal(subsets[0].splits["test"].inputs["input_ids"], full.splits["test"].inputs["input_ids"])
    assert len([p for p in tok.iterdir() if p.is_dir()]) == 1


# -- the tokenizer ---------------------------------------------------------------------------


def test_tokenizer_trained_once_then_loaded(sst2_dir, tmp_path, caplog):
    texts, _ = read_table(sst2_dir / "train.tsv", 0, 1, header=True)
    store = tmp_path / "tok"
    with caplog.at_level(logging.INFO, logger="distillab.data.tokenizer"):
        first = load_or_train_wordpiece(texts, 800, True, store)
        assert "trained a WordPiece tokenizer (vocab 800) on 1500 texts" in caplog.text
        (entry,) = [p for p in store.iterdir() if p.is_dir()]
        stamp = (entry / "tokenizer.json").stat().st_mtime_ns
        caplog.clear()
        second = load_or_train_wordpiece(texts, 800, True, store)
        assert "reusing tokenizer" in caplog.text and "trained a WordPiece" not in caplog.text
    assert (entry / "tokenizer.json").stat().st_mtime_ns == stamp
    assert first.to_str() == second.to_str()
    load_or_train_wordpiece(texts, 800, False, store)  # other settings, another entry
    assert len([p for p in store.iterdir() if p.is_dir()]) == 2


def test_encode_shape_cls_padding_and_truncation(sst2_dir, tmp_path):
    texts, _ = read_table(sst2_dir / "train.tsv", 0, 1, header=True)
    tok = load_or_train_wordpiece(texts, 800, True, tmp_path / "tok")
    cls, sep, pad = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert pad == 0
    out = encode(tok, ["a fine film", " ".join(texts[:40])], max_length=12)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (2, 12) and ids.dtype == mask.dtype == torch.long
    assert ids[:, 0].tolist() == [cls, cls]
    n = int(mask[0].sum())
    assert ids[0, n - 1] == sep and ids[0, n:].eq(0).all() and mask[0, n:].eq(0).all() and mask[0, :n].eq(1).all()
    assert mask[1].all() and ids[1, -1] == sep  # truncated, still ending in [SEP]
    assert tok.padding is None and tok.truncation is None  # the shared tokenizer is left as it was
    assert encode(tok, [], max_length=12)["input_ids"].shape == (0, 12)


# -- several domains -------------------------------------------------------------------------


def test_domains_have_disjoint_labels_domain_ids_and_one_tokenizer(sst2_dir, agnews_dir, tmp_path):
    tok = tmp_path / "tok"
    domains = {
        "sst2": dict(
            data_dir=str(sst2_dir),
            train_file="train.tsv",
            val_file="dev.tsv",
            test_file="test.tsv",
            header=True,
            text_column="sentence",
            label_column="label",
            max_train_samples=600,
        ),
        "agnews": dict(data_dir=str(agnews_dir), train_file="dev.tsv", test_file="test.tsv", labels=AGNEWS_LABELS),
    }
    dm = TextDomainsDataModule(domains, vocab_size=1500, max_length=48, tokenizer_dir=str(tok))
    dm.setup()
    assert dm.num_domains == 2 and dm.domain_names == ["sst2", "agnews"]
    assert dm.label_names == ["sst2:0", "sst2:1", *(f"agnews:{y}" for y in AGNEWS_LABELS)] and dm.num_classes == 6
    assert dm.model_kwargs["num_labels"] == 6
    assert len([p for p in tok.iterdir() if p.is_dir()]) == 1
    for split, sizes in {"train": (600, 1080), "val": (300, 120), "test": (200, 400)}.items():
        ds = dm.splits[split]
        assert torch.bincount(ds.extras["domain"]).tolist() == list(sizes)
        assert len(dm.texts[split]) == len(ds)
        for d, labels in enumerate((range(2), range(2, 6))):
            assert set(ds.labels[ds.extras["domain"] == d].tolist()) <= set(labels)
    test = dm.splits["test"]
    assert dm.texts["test"][200:] == read_table(agnews_dir / "test.tsv", 0, 1, header=False)[0]
    assert torch.equal(test.labels[200:] - 2, agnews(agnews_dir, tok).load_splits()["test"][1])
    teacher1 = dm.restricted_to_domain(1)
    assert set(teacher1.splits["train"].labels.tolist()) == {2, 3, 4, 5}
    assert teacher1.texts["test"] == dm.texts["test"][200:] and len(dm.texts["test"]) == 600
    batch = next(iter(dm.train_dataloader()))
    ids = batch["inputs"]["input_ids"]
    assert "domain" in batch and ids.shape[0] == 64 and ids.shape[1] <= 48
    domains["agnews"]["test_file"] = "gone.tsv"
    with pytest.raises(ConfigError) as err:
        TextDomainsDataModule(domains, tokenizer_dir=str(tok))
    assert err.value.key == "domains.agnews.test_file"
    with pytest.raises(ConfigError) as err:
        TextDomainsDataModule({"sst2": {**domains["sst2"], "max_len": 3}, "b": domains["sst2"]})
    assert err.value.key == "domains.sst2.max_len"


# -- configs and a model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sst2", "agnews", "sst2_agnews"])
def test_data_configs_build(name, tmp_path):
    shared("sst2", "train.tsv"), shared("agnews", "dev.tsv")
    node = OmegaConf.load(ROOT / "src" / "distillab" / "conf" / "data" / f"{name}.yaml")
    cfg = OmegaConf.create({"paths": {"data_root": str(DATA), "teachers_dir": str(tmp_path)}, "seed": 3, "data": node})
    dm = instantiate(cfg.data)  # checks every key and that the files exist; reads nothing yet
    assert dm.max_length == 64 and dm.tokenizer_settings.tokenizer_dir == tmp_path / "tokenizers"
    assert dm.labelled_fraction == 1.0 and dm.label_seed == (3 if "labelled_fraction" in node else 0)


def test_tiny_bert_forward_on_a_real_batch(sst2_dir, tmp_path):
    dm = sst2(sst2_dir, tmp_path / "tok")
    model = build_bert(**dm.model_kwargs, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    batch = next(iter(dm.train_dataloader()))
    out = model(batch["inputs"])
    assert out.logits.shape == (16, 2) and torch.isfinite(out.logits).all()
    loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
    loss.backward()
    assert model.model.bert.embeddings.word_embeddings.weight.grad is not None


# -- few labels and unlabelled inputs ----------------------------------------------------------


def test_unlabelled_file_feeds_the_student_not_the_teacher(sst2_dir, tmp_path):
    # Real sentences without their labels: SST-2 rows past the fixture's.
    extra = [line.split("\t")[0].strip() for line in head(shared("sst2", "train.tsv"), 100, skip=2000)]
    (tmp_path / "more.txt").write_text("\n".join(extra) + "\n\n")
    dm = sst2(sst2_dir, tmp_path / "tok", unlabelled=str(tmp_path / "more.txt"), labelled_fraction=0.5, label_seed=1)
    dm.setup()
    train = dm.splits["train"]
    assert len(train) == 1600 and dm.texts["train"][1500:] == extra
    labelled = train.extras["labelled"]
    assert not labelled[1500:].any()  # no label at all: never read by a CE term
    assert int(labelled[:1500].sum()) == 750
    teacher = dm.for_teacher().splits["train"]
    assert len(teacher) == 1500 and "labelled" not in teacher.extras
    texts, labels = dm.labelled_texts()
    assert len(texts["train"]) == len(labels["train"]) == 1500


def test_unlabelled_file_errors(sst2_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        sst2(sst2_dir, tmp_path / "tok", unlabelled=str(tmp_path / "missing.txt"))
    assert err.value.key == "unlabelled"
    (tmp_path / "empty.txt").write_text("\n \n")
    dm = sst2(sst2_dir, tmp_path / "tok", unlabelled=str(tmp_path / "empty.txt"))
    with pytest.raises(ConfigError, match="holds no text"):
        dm.setup()
