"""Token classification (NER): CoNLL files read and refused, word tags on first sub-tokens by hand,
entity F1 equal to seqeval's, token-level KD and CE that skip -100 positions, token heads."""

from pathlib import Path

import pytest
import torch
from hand import kl_by_hand, softmax_by_hand
from seqeval.metrics import f1_score, precision_score, recall_score
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from distillab.core.config import ConfigError
from distillab.data import TokenClassificationDataModule
from distillab.data.text.conll import check_tag_names, read_conll, tag_ids
from distillab.data.text.token_labels import IGNORE_INDEX, encode_tagged, first_subtoken_labels
from distillab.evaluation.entity_metrics import token_classification_metrics
from distillab.losses import CrossEntropy, HintonKD, SoftTargetKL
from distillab.models import build_bert
from distillab.models.output import ModelOutput

TAGS = ["O", "B-location", "I-location", "B-person", "I-person"]
X = IGNORE_INDEX


def tiny_wordpiece() -> Tokenizer:
    """A BERT-style WordPiece over a vocabulary written by hand, so every piece is known."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "empire", "state", "build", "##ing", "=", "es", "##b", ".", "hi"]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    return tokenizer


def test_first_subtoken_rule_by_hand():
    # "Empire State Building = ESB ." tagged B-loc I-loc I-loc O B-loc O:
    #   [CLS] empire state build ##ing = es ##b . [SEP] [PAD]
    # the tag sits on each word's first piece; ##ing, ##b, the specials and padding get -100.
    words = [["Empire", "State", "Building", "=", "ESB", "."]]
    encoded = encode_tagged(tiny_wordpiece(), words, [[1, 2, 2, 0, 1, 0]], max_length=11)
    assert encoded.inputs["input_ids"][0].tolist() == [2, 4, 5, 6, 7, 8, 9, 10, 11, 3, 0]
    assert encoded.inputs["attention_mask"][0].tolist() == [1] * 10 + [0]
    assert encoded.labels[0].tolist() == [X, 1, 2, 2, X, 0, 1, X, 0, X, X]
    assert (encoded.cut_words, encoded.unknown_words) == (0, 0)


def test_a_word_the_tokenizer_drops_keeps_its_tag_and_a_cut_word_is_counted():
    # A zero-width space is normalised away: it becomes [UNK] and keeps its tag (3).
    encoded = encode_tagged(tiny_wordpiece(), [["hi", "\u200b", "hi"]], [[0, 3, 0]], max_length=6)
    assert encoded.inputs["input_ids"][0].tolist() == [2, 12, 1, 12, 3, 0]
    assert encoded.labels[0].tolist() == [X, 0, 3, 0, X, X]
    assert encoded.unknown_words == 1
    # Four tokens of room: [CLS] empire state [SEP]; "Building" is cut and carries no label.
    cut = encode_tagged(tiny_wordpiece(), [["Empire", "State", "Building"]], [[1, 2, 2]], max_length=4)
    assert cut.labels[0].tolist() == [X, 1, 2, X] and cut.cut_words == 1


def test_first_subtoken_labels_of_word_ids():
    assert first_subtoken_labels([None, 0, 0, 1, 2, 2, 2, None, None], [5, 6, 7]) == [X, 5, X, 6, 7, X, X, X, X]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_conll_sentences_split_on_blank_and_tab_only_lines(tmp_path):
    # WNUT-17's training file ends most sentences with a lone tab.
    path = write(tmp_path, "a.conll", "Empire\tB-location\nState\tI-location\n\t\nhi\tO\n\n\nthere\tO\n")
    read = read_conll(path, "train_file")
    assert read.words == [["Empire", "State"], ["hi"], ["there"]]
    assert read.tags == [["B-location", "I-location"], ["O"], ["O"]]
    assert tag_ids("train_file", path, read, TAGS) == [[1, 2], [0], [0]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("hi\tO\nthere O\n", "line 2 has no tab between token and tag: 'there O'"),
        ("hi\t\n", "line 1 has an empty tag"),
        ("\n\t\n", "has no sentences"),
        ("hi\tO\n\nParis\tB-city\n", "has tag 'B-city' on line 3 (1 word), not among the labels"),
    ],
)
def test_a_bad_conll_file_is_one_config_error_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, "bad.conll", text)
    with pytest.raises(ConfigError) as err:
        tag_ids("test_file", path, read_conll(path, "test_file"), TAGS)
    assert err.value.key == "test_file" and err.value.value == str(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_data_module_names_the_file_key_of_a_bad_file(tmp_path):
    write(tmp_path, "train.conll", "Empire\tB-location\nState\tI-location\n\nhi\tO\n")
    write(tmp_path, "test.conll", "hi\tO\nthere\n")
    dm = TokenClassificationDataModule(
        str(tmp_path), "train.conll", "test.conll", "train.conll", tokenizer_dir=str(tmp_path / "tok"), vocab_size=16
    )
    with pytest.raises(ConfigError, match=r"^test_file='.*test.conll': line 2 has no tab"):
        dm.setup()
    assert "no such file" in str(
        pytest.raises(ConfigError, TokenClassificationDataModule, str(tmp_path), "x", "y").value
    )


def test_tag_names_must_be_bio():
    assert check_tag_names(["O", "B-x", "I-x"]) == ("O", "B-x", "I-x")
    with pytest.raises(ConfigError, match="'LOC', not a BIO tag"):
        check_tag_names(["O", "LOC"])


def test_the_data_module_on_a_small_file(tmp_path):
    write(tmp_path, "train.conll", "Empire\tB-location\nState\tI-location\n\nhi\tO\nBob\tB-person\n\n")
    dm = TokenClassificationDataModule(
        str(tmp_path), "train.conll", "train.conll", "train.conll", labels=TAGS, tokenizer_dir=str(tmp_path / "tok")
    )
    dm.use_tokenizer(write(tmp_path, "tokenizer.json", tiny_wordpiece().to_str()))
    dm.setup()
    assert dm.model_kwargs == {"num_labels": 5, "vocab_size": 13, "max_length": 192, "task": "token_classification"}
    batch = dm.splits["train"].batch(torch.arange(2))
    # Cut to the longest sentence: [CLS] empire state [SEP] / [CLS] hi bob [SEP] ("bob" is [UNK]).
    assert batch["inputs"]["input_ids"].tolist() == [[2, 4, 5, 3], [2, 12, 1, 3]]
    assert batch["labels"].tolist() == [[X, 1, 2, X], [X, 0, 3, X]]


def one_hot_logits(tag_ids_per_position: list[list[int]], classes: int = 5) -> torch.Tensor:
    """Logits whose argmax is the given tag at every position (-100 positions: tag 0)."""
    ids = torch.tensor(tag_ids_per_position).clamp_min(0)
    return torch.nn.functional.one_hot(ids, classes).float() * 5


def test_entity_f1_equals_seqeval_on_a_hand_made_case():
    # Two sentences; -100 marks the later pieces and the specials, which no word is read at.
    #   sentence 1 gold: B-loc I-loc O B-per   predicted: B-loc I-loc O O      (a piece between)
    #   sentence 2 gold: B-per I-per O         predicted: B-per O     B-loc
    gold = [[X, 1, X, 2, 0, 3, X], [X, 3, 4, 0, X, X, X]]
    predicted = [[0, 1, 4, 2, 0, 0, 0], [0, 3, 0, 1, 0, 0, 0]]
    metrics = token_classification_metrics("test/", TAGS)
    metrics.update(one_hot_logits(predicted), torch.tensor(gold))
    got = {k: float(v) for k, v in metrics.compute().items()}
    names = lambda rows: [[TAGS[i] for i in row] for row in rows]  # noqa: E731
    y_true = names([[1, 2, 0, 3], [3, 4, 0]])
    y_pred = names([[1, 2, 0, 0], [3, 0, 1]])
    # By hand: gold entities {loc(1-2), per(4), per(1-2)}, predicted {loc(1-2), per(1), loc(3)}:
    # one right of three each way, so P = R = F1 = 1/3; words right 3 + 1 of 7.
    assert got["test/precision"] == pytest.approx(precision_score(y_true, y_pred)) == pytest.approx(1 / 3)
    assert got["test/recall"] == pytest.approx(recall_score(y_true, y_pred)) == pytest.approx(1 / 3)
    assert got["test/f1"] == pytest.approx(f1_score(y_true, y_pred)) == pytest.approx(1 / 3)
    assert got["test/acc"] == pytest.approx(4 / 7)


def test_entity_metrics_accumulate_over_batches_and_read_conll_chunks():
    # An I- after O starts an entity (conlleval's reading, seqeval's default), over two updates.
    metrics = token_classification_metrics("val/", TAGS)
    metrics.update(one_hot_logits([[X, 2, 0]]), torch.tensor([[X, 1, 0]]))  # I-loc for B-loc: right
    metrics.update(one_hot_logits([[X, 0, 0]]), torch.tensor([[X, 3, 0]]))  # a person missed
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert (got["val/precision"], got["val/recall"]) == (1.0, 0.5)
    assert got["val/f1"] == pytest.approx(
        f1_score([["B-location", "O"], ["B-person", "O"]], [["I-location", "O"], ["O", "O"]])
    )


def test_kd_and_ce_per_token_skip_minus_100_positions():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[X, 1, X, 2], [X, 0, X, X]])
    batch = {"labels": labels}
    kd = SoftTargetKL(temperature=2.0)(ModelOutput(student), ModelOutput(teacher), batch)
    kept = [(0, 1), (0, 3), (1, 1)]
    by_hand = sum(
        kl_by_hand(softmax_by_hand(teacher[i, j].tolist(), 2.0), softmax_by_hand(student[i, j].tolist(), 2.0))
        for i, j in kept
    )
    assert float(kd) == pytest.approx(4 * by_hand / 3, rel=1e-5)  # T² · mean over the 3 labelled tokens
    # What sits at a -100 position changes nothing.
    moved = student.clone()
    moved[labels == X] += 100
    again = HintonKD(temperature=2.0, alpha=0.5)
    assert float(again(ModelOutput(moved), ModelOutput(teacher), batch).total) == pytest.approx(
        float(again(ModelOutput(student), ModelOutput(teacher), batch).total), rel=1e-5
    )
    ce = CrossEntropy()(ModelOutput(student), None, batch)
    log_q = student.log_softmax(-1)
    assert float(ce) == pytest.approx(-float(log_q[0, 1, 1] + log_q[0, 3, 2] + log_q[1, 1, 0]) / 3, rel=1e-5)


def test_kd_on_one_label_per_sample_still_reads_every_sample():
    # [B] labels for [B, C] logits (few labels give unlabelled rows a placeholder): nothing is masked.
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    term = SoftTargetKL(temperature=1.0)
    labelled = term(ModelOutput(student), ModelOutput(teacher), {"labels": torch.tensor([0, X, 1])})
    assert float(labelled) == pytest.approx(float(term(ModelOutput(student), ModelOutput(teacher), {})))


def test_bert_with_a_head_on_every_token():
    model = build_bert(
        5, 13, 16, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, task="token_classification"
    )
    assert type(model.model).__name__ == "BertForTokenClassification"
    out = model({"input_ids": torch.ones(2, 7, dtype=torch.long), "attention_mask": torch.ones(2, 7, dtype=torch.long)})
    assert out.logits.shape == (2, 7, 5)
    with pytest.raises(ConfigError, match="task='tagging': must be one of classification, token_classification"):
        build_bert(5, 13, 16, task="tagging")
