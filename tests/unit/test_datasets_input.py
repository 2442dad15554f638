"""Text data from `datasets`-style inputs: the same SST-2 rows as TSV, JSON Lines, Parquet and a
saved `datasets` folder give the same splits and the same teacher store key; a language-model
corpus reads a .jsonl / .parquet / saved source as it reads the TSV; bad inputs stop with one
line naming the key.

The rows are the first 50 of the shared SST-2 training file (the tests skip without it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from distillab.core.config import ConfigError
from distillab.data import TextClassificationDataModule
from distillab.data.language.lm_corpus import CorpusDataModule
from distillab.data.row_identity import data_identity

datasets = pytest.importorskip("datasets", reason="pip install datasets (save_to_disk folders)")
pq = pytest.importorskip("pyarrow.parquet", reason="pip install pyarrow (.parquet files)")

SST2_TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2" / "train.tsv"
SPLITS = {"train": (0, 30), "validation": (30, 40), "test": (40, 50)}
TSV_NAMES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
KNOBS = dict(max_length=16, vocab_size=120, batch_size=8)


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    """SST-2's first 50 rows, {"sentence": str, "label": int}, cut into train/validation/test."""
    if not SST2_TRAIN.is_file():
        pytest.skip(f"needs the shared data file {SST2_TRAIN}")
    with SST2_TRAIN.open(encoding="utf-8", newline="") as f:
        read = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        table = [{"sentence": r["sentence"], "label": int(r["label"])} for _, r in zip(range(50), read)]
    return {split: table[a:b] for split, (a, b) in SPLITS.items()}


@pytest.fixture(scope="module")
def folders(rows, tmp_path_factory) -> dict[str, Path]:
    """The rows written as TSV, .jsonl, .parquet, .txt holding JSON lines, and a DatasetDict folder."""
    root = tmp_path_factory.mktemp("formats")
    out = {name: root / name for name in ("tsv", "jsonl", "parquet", "txt", "saved")}
    for folder in out.values():
        folder.mkdir()
    for split, part in rows.items():
        lines = ["sentence\tlabel", *(f"{r['sentence']}\t{r['label']}" for r in part)]
        (out["tsv"] / TSV_NAMES[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        jsonl = "".join(json.dumps(r) + "\n" for r in part)
        (out["jsonl"] / f"{split}.jsonl").write_text(jsonl, encoding="utf-8")
        (out["txt"] / f"{split}.txt").write_text(jsonl, encoding="utf-8")
        datasets.Dataset.from_list(part).to_parquet(str(out["parquet"] / f"{split}.parquet"))
    datasets.DatasetDict({s: datasets.Dataset.from_list(p) for s, p in rows.items()}).save_to_disk(str(out["saved"]))
    return out


def overrides_for(kind: str, folders: dict[str, Path]) -> dict:
    """The data keys that point data=sst2 at ``kind``'s copy of the rows."""
    if kind == "load_from_disk":
        return {"load_from_disk": str(folders["saved"])}
    names = {
        "tsv": TSV_NAMES,
        "jsonl": {s: f"{s}.jsonl" for s in SPLITS},
        "parquet": {s: f"{s}.parquet" for s in SPLITS},
        "txt": {s: f"{s}.txt" for s in SPLITS},
        "saved": {s: s for s in SPLITS},  # each split's save_to_disk folder as a file key
    }[kind]
    keys = {"data_dir": str(folders[kind]), "train_file": names["train"], "val_file": names["validation"]}
    return {**keys, "test_file": names["test"], **({"format": "jsonl"} if kind == "txt" else {})}


def sst2_config(tmp_path: Path, data: dict):
    """The composed run config with data=sst2 and ``data`` merged into it (as overrides would be)."""
    from hydra import compose, initialize_config_dir

    from distillab.cli.train import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        paths = [f"paths.{name}={tmp_path}" for name in ("root_dir", "data_root", "output_dir", "teachers_dir")]
        cfg = compose("train", overrides=["data=sst2", *paths])
    cfg.data = OmegaConf.merge(cfg.data, {**KNOBS, **data})
    return cfg


def key_of(cfg, datamodule) -> str:
    from distillab.run.teachers import TeacherSpec, store_key

    return store_key(cfg, TeacherSpec("teacher", "model.teacher", cfg.model.teacher, 0), data_identity(datamodule))


def test_the_same_rows_in_every_format_give_the_same_splits_and_store_key(folders, tmp_path):
    seen = {}
    for kind in ("tsv", "jsonl", "parquet", "txt", "saved", "load_from_disk"):
        cfg = sst2_config(tmp_path, overrides_for(kind, folders))
        dm = instantiate(cfg.data)
        dm.setup()
        texts, labels = dm.labelled_texts()
        seen[kind] = (texts, labels, dm.label_names, key_of(cfg, dm))
    tsv = seen["tsv"]
    assert {split: len(t) for split, t in tsv[0].items()} == {"train": 30, "val": 10, "test": 10}
    assert tsv[2] == ["0", "1"]
    for kind, got in seen.items():
        assert got[:3] == tsv[:3], kind
        assert got[3] == tsv[3], f"{kind} gives another teacher store key than the TSV"


def test_other_rows_give_another_store_key(folders, tmp_path):
    cfg = sst2_config(tmp_path, overrides_for("jsonl", folders))
    first = instantiate(cfg.data)
    other_cfg = sst2_config(tmp_path, {**overrides_for("jsonl", folders), "val_file": None})
    other = instantiate(other_cfg.data)  # val carved off train: other training rows
    assert key_of(cfg, first) != key_of(other_cfg, other)


def corpus(tmp_path: Path, source: dict) -> CorpusDataModule:
    dm = CorpusDataModule(
        [source], vocab_size=300, block_size=8, val_fraction=0.1, test_fraction=0.1, tokenizer_dir=str(tmp_path / "tok")
    )
    dm.setup()
    return dm


def test_lm_corpus_reads_a_jsonl_parquet_or_saved_source_as_the_tsv(folders, tmp_path):
    tsv = corpus(tmp_path, {"path": str(folders["tsv"] / "train.tsv"), "column": "sentence"})
    sources = [
        {"path": str(folders["jsonl"] / "train.jsonl"), "column": "sentence"},
        {"path": str(folders["parquet"] / "train.parquet"), "column": 0},
        {"path": str(folders["saved"] / "train"), "column": "sentence"},
        {"path": str(folders["txt"] / "train.txt"), "column": "sentence", "format": "json"},
    ]
    for source in sources:
        dm = corpus(tmp_path, source)
        for split in ("train", "val", "test"):
            assert torch.equal(dm.splits[split].inputs["input_ids"], tsv.splits[split].inputs["input_ids"]), source
        assert data_identity(dm) == data_identity(tsv)
    assert data_identity(tsv).location_keys == ("sources",)


def error_of(make) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        make()
    assert "\n" not in str(err.value)
    return err.value


def text_module(tmp_path: Path, **keys) -> TextClassificationDataModule:
    dm = TextClassificationDataModule(tokenizer_dir=str(tmp_path / "tok"), **KNOBS, **keys)
    dm.setup()
    return dm


def jsonl_keys(folders, **more) -> dict:
    keys = dict(data_dir=str(folders["jsonl"]), train_file="train.jsonl", test_file="test.jsonl")
    return {**keys, "text_column": "sentence", "label_column": "label", "header": True, **more}


@pytest.fixture
def bad_files(tmp_path) -> Path:
    """An empty .jsonl, one with a null text, and a saved Dataset (one split, not a DatasetDict)."""
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "null.jsonl").write_text('{"sentence": null, "label": 1}\n')
    datasets.Dataset.from_list([{"sentence": "a", "label": 0}]).save_to_disk(str(tmp_path / "one"))
    return tmp_path


# (keys over jsonl_keys: "<tmp>" is the bad_files folder, "<saved>" the DatasetDict), key, words
TEXT_CASES = [
    (dict(label_column="stars"), "label_column", "no such column"),
    (dict(text_column=5), "text_column", "out of range"),
    (dict(labels=["0"]), "train_file", "not among the labels"),
    (dict(data_dir="<tmp>", test_file="empty.jsonl", train_file="<jsonl>/train.jsonl"), "test_file", "has no rows"),
    (dict(data_dir="<tmp>", train_file="null.jsonl", test_file="<jsonl>/test.jsonl"), "train_file", "not text"),
    (dict(format="xlsx"), "format", "must be one of tsv, csv, json, jsonl, parquet"),
    (dict(train_file="missing.jsonl"), "train_file", "no such file"),
    (dict(train_file="<saved>"), "train_file", "holds several splits"),
    (dict(load_from_disk="<tmp>/nowhere"), "load_from_disk", "no such folder"),
    (dict(load_from_disk="<tmp>/one"), "load_from_disk", "holds one split"),
    (dict(load_from_disk="<saved>", labels=["1"]), "load_from_disk", "not among the labels"),
    (dict(load_from_disk="<jsonl>"), "load_from_disk", "not one written by datasets' save_to_disk"),
]


@pytest.mark.parametrize("keys, key, words", TEXT_CASES, ids=[c[1] + ":" + c[2] for c in TEXT_CASES])
def test_bad_text_inputs_name_their_key(folders, bad_files, keys, key, words):
    places = {"<tmp>": str(bad_files), "<saved>": str(folders["saved"]), "<jsonl>": str(folders["jsonl"])}
    for name, path in places.items():
        keys = {k: v.replace(name, path) if isinstance(v, str) else v for k, v in keys.items()}
    err = error_of(lambda: text_module(bad_files, **jsonl_keys(folders, **keys)))
    assert err.key == key and words in str(err), str(err)


CORPUS_CASES = [
    ({"path": "<jsonl>/train.jsonl"}, "sources[0].column", "holds rows: name the column of documents"),
    ({"path": "<jsonl>/train.jsonl", "column": "text"}, "sources[0].column", "no such column"),
    ({"path": "<jsonl>/train.jsonl", "column": "sentence", "format": "arrow"}, "sources[0].format", "must be one of"),
    ({"path": "<jsonl>/missing.parquet", "column": "text"}, "sources[0].path", "no such file"),
    ({"path": "<saved>", "column": "sentence"}, "sources[0].path", "holds several splits"),
]


@pytest.mark.parametrize("source, key, words", CORPUS_CASES, ids=[c[0].get("format") or c[2] for c in CORPUS_CASES])
def test_bad_corpus_sources_name_their_key(folders, tmp_path, source, key, words):
    places = {"<saved>": str(folders["saved"]), "<jsonl>": str(folders["jsonl"])}
    path = source["path"]
    for name, value in places.items():
        path = path.replace(name, value)
    err = error_of(lambda: corpus(tmp_path, {**source, "path": path}))
    assert err.key == key and words in str(err), str(err)
