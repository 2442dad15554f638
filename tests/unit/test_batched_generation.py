"""Batched generation of prompts of different lengths: left padding under an attention mask gives
token for token what each prompt gives alone, and output stops after end-of-text."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import config_error_key
from distillab.models.generation import generate_batched
from distillab.models.output import TransformerClassifier
from tiny_llm import tiny_llama

VOCAB = 120
PAD = 0


def tiny(architecture: str):
    torch.manual_seed(0)
    # initializer_range 0.5: logits far apart, so no greedy choice is a near-tie that rounding could flip.
    if architecture == "llama":
        return tiny_llama(VOCAB)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, initializer_range=0.5)
    return GPT2LMHeadModel(config).eval()


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (3, 7, 5)]


def alone(model, ids: list[int], new: int) -> list[int]:
    # The reference: one unpadded prompt, greedy, no stop token.
    x = torch.tensor([ids])
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=new,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=PAD,
    )
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_batched_greedy_equals_one_by_one(architecture):
    model = tiny(architecture)
    p = prompts()
    expected = [alone(model, ids, 10) for ids in p]
    batched = generate_batched(model, p, 10, eos_token_id=None, pad_token_id=PAD, batch_size=3)
    assert batched == expected
    assert all(len(t) == 10 for t in batched)
    # Batches of two (lengths 3+5, then 7) and a different pad id change nothing.
    assert generate_batched(model, p, 10, eos_token_id=None, pad_token_id=VOCAB - 1, batch_size=2) == expected
    # The wrapper is unwrapped to its HF model.
    assert generate_batched(TransformerClassifier(model, "input_ids"), p, 10, None, PAD) == expected


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_padding_without_mask_would_differ(architecture):
    # The check above can fail: left-padded prompts fed without their mask change the greedy tokens.
    model = tiny(architecture)
    p = prompts()
    width = max(map(len, p))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in p])
    unmasked = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=PAD,
    )[:, width:].tolist()
    assert unmasked != [alone(model, r, 10) for r in p]


def test_stops_after_eos_and_keeps_it():
    model = tiny("llama")
    p = prompts()
    free = [alone(model, ids, 12) for ids in p]
    # End-of-text := the 4th greedy token of the second prompt (absent before it in that row).
    eos = free[1][3]
    expected = [r[: r.index(eos) + 1] if eos in r else r for r in free]
    assert len(expected[1]) <= 4 and expected[1][-1] == eos
    assert generate_batched(model, p, 12, eos_token_id=eos, pad_token_id=PAD, batch_size=3) == expected


def test_sampling_is_seeded_and_leaves_the_global_stream():
    model = tiny("gpt2")
    p = prompts()
    torch.manual_seed(11)
    a = generate_batched(model, p, 8, None, PAD, temperature=1.0, seed=5)
    after = torch.rand(1)
    torch.manual_seed(11)
    b = generate_batched(model, p, 8, None, PAD, temperature=1.0, seed=5)
    assert a == b and torch.equal(torch.rand(1), after)
    assert generate_batched(model, p, 8, None, PAD, temperature=1.0, seed=6) != a


def test_bad_input_names_the_key():
    model = tiny("gpt2")
    assert config_error_key(lambda: generate_batched(model, [[1, 2], []], 4, None, PAD)) == "prompt_ids[1]"
    assert config_error_key(lambda: generate_batched(model, [[1] * 60], 10, None, PAD)) == "max_new_tokens"
    assert config_error_key(lambda: generate_batched(model, [[1, VOCAB]], 4, None, PAD)) == "prompt_ids[0]"
    assert config_error_key(lambda: generate_batched(model, [[1]], 4, None, PAD, batch_size=0)) == "batch_size"
    assert generate_batched(model, [], 4, None, PAD) == []
