"""Greedy answers through a ChatML template, batched, equal to one question at a time; the table."""

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from conftest import config_error_key
from distillab.evaluation.answers import chat_prompt_ids, format_answers, greedy_answers
from tiny_llm import tiny_llama

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = "what is the capital of france paris a an city country user assistant ? .".split() + [
    f"w{i}" for i in range(300)
]
QUESTIONS = ["what is the capital of france ?", "w1 w2", "what is a city of the country w7 w8 w9 ?"]


def chat_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["<unk>", "<|im_start|>", "<|im_end|>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def test_prompt_is_the_chat_template():
    tokenizer = chat_tokenizer()
    ids = chat_prompt_ids(tokenizer, "what is paris ?")
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    words = [tokenizer.convert_tokens_to_ids(w) for w in ["user", "what", "is", "paris", "?", "assistant"]]
    assert ids == [start, words[0], *words[1:5], end, start, words[5]]
    assert (
        ids
        == tokenizer.apply_chat_template(
            [{"role": "user", "content": "what is paris ?"}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
    )


def test_batched_answers_equal_one_by_one():
    tokenizer = chat_tokenizer()
    model = tiny_llama(len(tokenizer))
    eos = tokenizer.eos_token_id
    # End-of-text swapped (in the output layer) with the 3rd token the first question's answer would
    # have, so that answer stops early. The mask is explicit: the prompt holds <|im_end|>, the pad id, which
    # generate would otherwise mask out.
    x = torch.tensor([chat_prompt_ids(tokenizer, QUESTIONS[0])])
    free = model.generate(
        input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=3, do_sample=False, eos_token_id=None
    )
    third = free[0, -1].item()
    with torch.no_grad():
        model.lm_head.weight[[eos, third]] = model.lm_head.weight[[third, eos]]
    expected, stopped = [], 0
    for q in QUESTIONS:
        x = torch.tensor([chat_prompt_ids(tokenizer, q)])
        out = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )[0, x.shape[1] :].tolist()
        stopped += eos in out
        expected.append(tokenizer.decode(out, skip_special_tokens=True).strip())
    assert 0 < stopped < len(QUESTIONS)  # both kinds: stopped at end-of-text and cut by the budget
    answers = greedy_answers(model, tokenizer, QUESTIONS, max_new_tokens=12, batch_size=3)
    assert answers == expected and all(isinstance(a, str) for a in answers)
    assert "<|im_end|>" not in " ".join(answers)
    assert greedy_answers(model, tokenizer, QUESTIONS, max_new_tokens=12, batch_size=2) == expected


def test_format_answers_and_errors():
    table = format_answers(["q1 | x", "q2"], {"teacher": ["Paris.", "two\nlines"], "student": ["Lyon", ""]})
    assert table.splitlines() == [
        "| question | teacher | student |",
        "|---|---|---|",
        "| q1 \\| x | Paris. | Lyon |",
        "| q2 | two<br>lines |   |",
    ]
    assert config_error_key(lambda: format_answers(["q"], {"teacher": []})) == "answers_by_model.teacher"
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = None
    model = tiny_llama(len(tokenizer))
    assert config_error_key(lambda: greedy_answers(model, tokenizer, ["q"])) == "tokenizer.chat_template"
