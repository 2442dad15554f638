"""Causal LMs from config (GPT-2 and Llama shaped) and from a local folder."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.models import build_causal_lm
from distillab.models.causal_lm import check_same_vocabulary


def tokens(vocab: int, batch: int = 2, seq: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, -3:] = 0  # the last sequence padded
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_next_token_logits_and_hidden_states(architecture):
    model = build_causal_lm(
        vocab_size=97,
        context=16,
        architecture=architecture,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        **({"num_kv_heads": 2} if architecture == "llama" else {}),
    )
    out = model(tokens(97), hidden_states=True)
    assert out.logits.shape == (2, 12, 97)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 12, 32)
    assert model.shape.num_layers == 2 and model.shape.hidden_size == 32 and model.shape.intermediate_size > 0


def test_the_issues_sizes():
    # The issue's sizing: a 5.3M GPT-2 shaped teacher (4 x 256, vocab 8,192) and a 1.5M student (2 x 128).
    teacher = build_causal_lm(vocab_size=8192, context=256, hidden_size=256, num_layers=4, num_heads=4)
    student = build_causal_lm(vocab_size=8192, context=256, hidden_size=128, num_layers=2, num_heads=2)
    assert teacher.num_parameters == pytest.approx(5.3e6, rel=0.02)
    assert student.num_parameters == pytest.approx(1.5e6, rel=0.03)


def test_causal_logits_do_not_see_the_future():
    model = build_causal_lm(vocab_size=50, context=16, hidden_size=32, num_layers=1, num_heads=2).eval()
    batch = tokens(50, batch=1)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["input_ids"][0, -1] = (changed["input_ids"][0, -1] + 1) % 50
    with torch.no_grad():
        a, b = model(batch).logits, model(changed).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1])  # earlier positions unchanged
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_local_folder_gives_the_same_logits(tmp_path):
    model = build_causal_lm(
        vocab_size=60, context=16, architecture="llama", hidden_size=32, num_layers=1, num_heads=2
    ).eval()
    model.model.save_pretrained(tmp_path)
    again = build_causal_lm(vocab_size=60, context=16, pretrained=str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(tokens(60)).logits, model(tokens(60)).logits)
    with pytest.raises(ConfigError, match="vocabulary of 60"):
        build_causal_lm(vocab_size=61, context=16, pretrained=str(tmp_path))
    with pytest.raises(ConfigError, match="config.json"):
        build_causal_lm(vocab_size=60, context=16, pretrained=str(tmp_path / "nothing"))


def test_config_errors():
    with pytest.raises(ConfigError, match="architecture"):
        build_causal_lm(vocab_size=60, context=16, architecture="rnn")
    with pytest.raises(ConfigError, match="must divide hidden_size"):
        build_causal_lm(vocab_size=60, context=16, hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="must divide num_heads"):
        build_causal_lm(vocab_size=60, context=16, architecture="llama", hidden_size=32, num_heads=4, num_kv_heads=3)
    teacher = build_causal_lm(vocab_size=60, context=16, hidden_size=32, num_layers=1, num_heads=2)
    student = build_causal_lm(vocab_size=61, context=16, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.raises(ConfigError, match="must equal the teacher's vocabulary"):
        check_same_vocabulary(teacher, student)
