"""Fixed-length continuations from causal LMs, seeded samples for the report, and their Markdown."""

import warnings

import pytest
import torch

from conftest import SHARED_DATA, config_error_key
from distillab.core.config import ConfigError
from distillab.data.language.bpe import EOS_TOKEN, build_bpe
from distillab.data.language.corpus import read_corpus_texts
from distillab.models import build_causal_lm
from distillab.models.generation import (
    continue_sequences,
    format_generations,
    sample_generations,
)

AGNEWS_DEV = SHARED_DATA / "agnews" / "dev.tsv"
VOCAB = 300
ARCHITECTURES = ["gpt2", "llama"]


def tiny_lm(architecture: str = "gpt2", vocab: int = VOCAB, eos: int | None = 0):
    torch.manual_seed(0)
    return build_causal_lm(
        vocab_size=vocab,
        context=32,
        architecture=architecture,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        eos_token_id=eos,
    )


def prompts(batch: int = 3, length: int = 5) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tokenizer():
    if not AGNEWS_DEV.is_file():
        pytest.skip(f"real data absent: {AGNEWS_DEV} (../shared/data not beside the checkout)")
    return build_bpe(read_corpus_texts(AGNEWS_DEV, 0)[:50], VOCAB)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shape_prompt_greedy_and_seeded_sampling(architecture):
    model, p = tiny_lm(architecture), prompts()
    greedy = continue_sequences(model, p, 10, sample=False)
    assert greedy.shape == (3, 15) and greedy.dtype == torch.long
    assert torch.equal(greedy[:, :5], p)
    assert torch.equal(continue_sequences(model, p, 10, sample=False), greedy)
    torch.manual_seed(7)
    a = continue_sequences(model, p, 10, temperature=0.8)
    torch.manual_seed(7)
    b = continue_sequences(model, p, 10, temperature=0.8)
    torch.manual_seed(8)
    c = continue_sequences(model, p, 10, temperature=0.8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, :5], p)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_exactly_new_tokens_even_when_eos_is_certain(architecture):
    model = tiny_lm(architecture)

    def eos_first(module, inputs, logits):
        return logits + 100 * torch.nn.functional.one_hot(torch.tensor(0), VOCAB)

    model.model.lm_head.register_forward_hook(eos_first)
    for sample in (False, True):
        out = continue_sequences(model, prompts(), 6, sample=sample)
        # EOS is emitted and generation goes on past it: no early stop, no padding.
        assert out.shape == (3, 11) and (out[:, 5:] == 0).all()


def test_top_k_none_is_the_whole_vocabulary_not_the_default_50():
    model, p = tiny_lm(), prompts(batch=1).expand(600, -1)
    # A random tiny LM is close to uniform: 600 draws from 300 tokens hit far more than 50 of them.
    distinct = lambda **kw: continue_sequences(model, p, 1, **kw)[:, -1].unique().numel()
    assert distinct(top_k=None) > 60 and distinct(top_k=0) > 60
    assert distinct(top_k=5) <= 5


def test_mode_restored_after_the_call_and_after_an_error(monkeypatch):
    model = tiny_lm()
    model.train()
    continue_sequences(model, prompts(), 2)
    assert model.training and model.model.training
    model.eval()
    continue_sequences(model, prompts(), 2)
    assert not model.training and not model.model.training
    model.train()
    model.model.transformer.h[0].eval()  # a partly frozen model keeps its mixed modes

    def broken(**kwargs):
        assert not model.model.training
        raise RuntimeError("boom")

    monkeypatch.setattr(model.model, "generate", broken)
    with pytest.raises(RuntimeError, match="boom"):
        continue_sequences(model, prompts(), 2)
    assert model.training and model.model.transformer.training and not model.model.transformer.h[0].training


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_invalid_settings_are_config_errors(architecture):
    model = tiny_lm(architecture)
    with pytest.raises(ConfigError, match=r"5 tokens \+ 29 new tokens = 34 needs 33 positions, .* 32") as err:
        continue_sequences(model, prompts(), 29)
    assert err.value.key == "new_tokens"
    # A full block and its next-token label: the last new token is never read by the model.
    assert continue_sequences(model, prompts(), 28, sample=False).shape == (3, 33)
    assert config_error_key(lambda: continue_sequences(model, prompts(), 0)) == "new_tokens"
    assert config_error_key(lambda: continue_sequences(model, prompts(), 2, temperature=0.0)) == "temperature"
    assert config_error_key(lambda: continue_sequences(model, prompts(), 2, top_k=-1)) == "top_k"


def test_no_warnings_per_call(capfd):
    model = tiny_lm(eos=None)  # no EOS in the config: padding falls back to id 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        continue_sequences(model, prompts(), 3)
        continue_sequences(model, prompts(), 3, sample=False, temperature=0.5)
    assert capfd.readouterr().err == ""


def test_sample_generations_keep_the_callers_rng_and_repeat_for_a_seed(tokenizer):
    model = tiny_lm(eos=tokenizer.token_to_id(EOS_TOKEN))
    texts = ["The company said on Tuesday", "Oil prices", "a very long prompt " * 20]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    rows = sample_generations(model, tokenizer, texts, 8, seed=5, top_k=20)
    assert torch.equal(torch.get_rng_state(), before)
    assert [r["prompt"] for r in rows] == texts  # the long prompt is cut for the model, not in the output
    assert all(r["greedy"] and r["sampled"] for r in rows)
    assert sample_generations(model, tokenizer, texts, 8, seed=5, top_k=20) == rows
    other = sample_generations(model, tokenizer, texts, 8, seed=6, top_k=20)
    assert [r["greedy"] for r in other] == [r["greedy"] for r in rows]
    assert [r["sampled"] for r in other] != [r["sampled"] for r in rows]
    # The continuation only: 8 tokens, none of the prompt's.
    assert len(tokenizer.encode(rows[1]["greedy"]).ids) <= 8
    assert config_error_key(lambda: sample_generations(model, tokenizer, texts, 32, seed=5)) == "new_tokens"


def test_format_generations():
    rows = [
        {"prompt": "Oil prices", "greedy": " rose\nagain", "sampled": " fell `sharply`"},
        {"prompt": "Stocks", "greedy": " up", "sampled": " down"},
    ]
    md = format_generations(rows, "Student samples")
    assert md.startswith("### Student samples\n")
    assert '- "Oil prices"' in md and '- "Stocks"' in md
    assert "  - greedy:  rose again" in md and "  - sampled:  fell \\`sharply\\`" in md
    assert md.count("greedy:") == 2 and md.count("sampled:") == 2
    assert "(no prompts)" in format_generations([], "Empty")
