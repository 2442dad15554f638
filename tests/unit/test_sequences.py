"""Where a language-model student's sequences come from: on-policy batches and the teacher's
stored continuations (sequence-level KD)."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.losses import CompositeLoss, CrossEntropy, TokenDivergence
from distillab.models.causal_lm import build_causal_lm
from distillab.teachers.sequences import (
    SequenceSource,
    on_policy_batch,
    stored_teacher_sequences,
)


def tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    return build_causal_lm(vocab_size=64, context=16, hidden_size=16, num_layers=1, num_heads=2)


def blocks(n: int = 6, length: int = 12) -> IndexedTensorDataset:
    ids = torch.randint(0, 64, (n, length + 1), generator=torch.Generator().manual_seed(1))
    return IndexedTensorDataset(
        {"input_ids": ids[:, :-1], "attention_mask": torch.ones(n, length, dtype=torch.long)}, ids[:, 1:]
    )


def test_on_policy_batch_keeps_the_prompt_and_lets_no_term_read_a_label():
    data = blocks()
    batch = data.batch(torch.arange(4))
    source = SequenceSource(source="on_policy", prompt_length=5)
    out = on_policy_batch(tiny_lm(), batch, source)
    ids, labels = out["inputs"]["input_ids"], out["labels"]
    assert ids.shape == labels.shape == (4, 12)
    assert torch.equal(ids[:, :5], batch["inputs"]["input_ids"][:, :5])
    assert torch.equal(labels[:, :-1], ids[:, 1:])  # still next-token labels
    assert out["mask"][:, :4].sum() == 0 and out["mask"][:, 4:].all()  # only generated tokens are read
    assert not out["labelled"].any()
    loss = CompositeLoss({"ce": CrossEntropy(), "kd": TokenDivergence()}, {"ce": 1.0, "kd": 1.0})
    student = tiny_lm(1)
    result = loss(student(out["inputs"]), tiny_lm(2)(out["inputs"]), out)
    assert float(result.parts["ce"].detach()) == 0.0 and float(result.parts["kd"].detach()) > 0


def test_teacher_sequences_are_generated_once_and_reused(tmp_path, monkeypatch):
    data, teacher = blocks(), tiny_lm()
    source = SequenceSource(source="teacher", prompt_length=4, temperature=0)
    first = stored_teacher_sequences(teacher, data, source, 0, tmp_path, "key")
    assert torch.equal(first.inputs["input_ids"][:, :4], data.inputs["input_ids"][:, :4])
    assert first.extras["mask"][:, 3:].all() and not first.extras["mask"][:, :3].any()
    # greedy: the continuation is the teacher's argmax at every generated position
    with torch.no_grad():
        logits = teacher(first.inputs).logits
    assert torch.equal(logits.argmax(-1)[:, 3:-1], first.labels[:, 3:-1])
    from distillab.teachers import sequences

    monkeypatch.setattr(sequences, "generate_teacher_sequences", lambda *a, **k: pytest.fail("generated twice"))
    again = stored_teacher_sequences(teacher, data, source, 0, tmp_path, "key")
    assert torch.equal(again.inputs["input_ids"], first.inputs["input_ids"])


@pytest.mark.parametrize(
    ("key", "value"),
    [("source", "beam"), ("on_policy_fraction", 1.5), ("prompt_length", 0), ("temperature", -1.0), ("top_k", 0)],
)
def test_bad_sequence_settings_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"^{key}="):
        SequenceSource(**{key: value})


def test_a_prompt_as_long_as_the_block_is_refused():
    with pytest.raises(ConfigError, match="prompt_length=12: must be shorter than the blocks"):
        SequenceSource(source="teacher", prompt_length=12).check_block(12)
