"""Multiple-choice scoring by log-likelihood, as lm-evaluation-harness: the sums against an explicit
one-at-a-time log_softmax, batched == one by one, and acc / acc_norm / acc_bytes on built cases."""

import math
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from conftest import config_error_key
from distillab.data.language.bpe import build_bpe
from distillab.evaluation.multiple_choice import encode_pair, score_multiple_choice
from distillab.evaluation.piqa import MultipleChoice, piqa_prompt
from tiny_llm import tiny_llama

WORDS = (
    "Question Answer : ? . how do i open a jar cut bread boil water with knife hot lid twist "
    "spoon fire no yes extraordinarily ééé abcd the to"
).split()


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


QUESTIONS = [
    MultipleChoice(piqa_prompt("how do i open a jar ?"), ("twist the lid .", "cut the lid with a knife ."), 0),
    MultipleChoice(piqa_prompt("how do i boil water ?"), ("fire .", "water with a hot spoon to the fire ."), 1),
]


def by_hand(model, tokenizer, context: str, continuation: str) -> float:
    # One sequence, no padding, no batching: sum of log p(token | everything before it) over the continuation.
    ctx = tokenizer.encode(context, add_special_tokens=False)
    cont = tokenizer.encode(continuation, add_special_tokens=False)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def test_logliks_and_accuracies_match_a_hand_computation():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    score = score_multiple_choice(model, tokenizer, QUESTIONS, batch_size=4)
    assert score.n == 2
    right = {"acc": 0, "acc_norm": 0}
    for q, question in enumerate(QUESTIONS):
        lls = [by_hand(model, tokenizer, question.context, c) for c in question.continuations]
        assert score.logliks[q] == pytest.approx(lls, abs=1e-5)
        pick = max(range(2), key=lambda i: lls[i])
        norm = max(range(2), key=lambda i: lls[i] / len(question.choices[i]))
        assert score.predictions[q] == pick
        right["acc"] += pick == question.label
        right["acc_norm"] += norm == question.label
    assert score.acc == right["acc"] / 2 and score.acc_norm == right["acc_norm"] / 2
    assert score.acc_bytes == score.acc_norm  # ASCII: bytes = chars
    assert score.as_dict() == {"acc": score.acc, "acc_norm": score.acc_norm, "acc_bytes": score.acc_bytes, "n": 2}


def test_batched_equals_one_by_one():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    many = QUESTIONS * 2 + [MultipleChoice("Question : how ?\nAnswer :", ("no", "yes . yes . yes"), 1)]
    single = score_multiple_choice(model, tokenizer, many, batch_size=1)
    for batch in (3, 64):
        batched = score_multiple_choice(model, tokenizer, many, batch_size=batch)
        for a, b in zip(batched.logliks, single.logliks, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
        assert (batched.acc, batched.acc_norm, batched.predictions) == (single.acc, single.acc_norm, single.predictions)


class Bigram(nn.Module):
    """logits[t] = table[input_ids[t]]: every log-probability is readable off the table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)
        self.config = SimpleNamespace(max_position_embeddings=None)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def test_acc_norm_and_acc_bytes_pick_differently_on_built_cases():
    tokenizer = word_tokenizer()
    ids = {w: tokenizer.convert_tokens_to_ids(w) for w in WORDS}
    v = len(tokenizer)
    table = torch.zeros(v, v)
    # After ":" (the prompt's last token): "no" is e times likelier than any other token.
    table[ids[":"], ids["no"]] = 1.0
    model = Bigram(table)
    z = math.log(v - 1 + math.e)
    ll_no, ll_other = 1.0 - z, -z
    # A short choice with the higher total, a long one (15 chars) with the higher total per char.
    long = MultipleChoice("Answer :", ("no", "extraordinarily"), 1)
    assert ll_no > ll_other and ll_other / 15 > ll_no / 2
    # 3 chars (6 UTF-8 bytes) vs 4 chars (4 bytes), equal totals: per char the 4 wins, per byte the 3.
    accents = MultipleChoice("Answer :", ("ééé", "abcd"), 0)
    score = score_multiple_choice(model, tokenizer, [long, accents], batch_size=2)
    assert score.logliks[0] == pytest.approx((ll_no, ll_other), abs=1e-6)
    assert score.logliks[1] == pytest.approx((ll_other, ll_other), abs=1e-6)
    # long: acc picks "no" (wrong), acc_norm and acc_bytes "extraordinarily" (right);
    # accents: acc ties -> first (right), acc_norm "abcd" (wrong), acc_bytes "ééé" (right).
    assert score.predictions == [0, 0]
    assert (score.acc, score.acc_norm, score.acc_bytes) == (0.5, 0.5, 1.0)


def test_encode_pair_moves_trailing_space_and_splits_the_whole():
    texts = ["Question: where is Paris?\nAnswer: Paris is in France.", "Answer: Paris, Answer: Rome"] * 5
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_bpe(texts, 300), eos_token="<|endoftext|>")
    ctx, cont = encode_pair(tokenizer, "Answer: ", "Paris")
    # The space belongs with the word it precedes: as if the context were "Answer:" and the choice " Paris".
    assert (ctx, cont) == encode_pair(tokenizer, "Answer:", " Paris")
    whole = tokenizer.encode("Answer: Paris", add_special_tokens=False)
    assert ctx == tokenizer.encode("Answer:", add_special_tokens=False) and ctx + cont == whole
    assert tokenizer.decode(cont) == " Paris"
    # An empty context reads the tokenizer's BOS/EOS first.
    assert encode_pair(tokenizer, "", " Paris")[0] == [tokenizer.eos_token_id]


def test_bad_input_names_the_key():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    assert config_error_key(lambda: score_multiple_choice(model, tokenizer, [])) == "questions"
    bad = MultipleChoice("Answer :", ("yes", "no"), 2)
    assert config_error_key(lambda: score_multiple_choice(model, tokenizer, [bad])) == "questions[0].label"
    assert config_error_key(lambda: score_multiple_choice(model, tokenizer, QUESTIONS, batch_size=0)) == "batch_size"
