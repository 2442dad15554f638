"""The teacher store keeps weights as safetensors (tied weights too); entries written before,
with a torch.save'd weights.pt, still load (weights_only=True)."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from distillab.core.entries import atomic_entry
from distillab.models import build_causal_lm
from distillab.teachers import TeacherStore, load_teacher_weights
from distillab.teachers.store import LEGACY_WEIGHTS, WEIGHTS


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_entries_are_safetensors_and_tied_weights_stay_tied(tmp_path):
    torch.manual_seed(0)
    lm = build_causal_lm(vocab_size=40, context=8, hidden_size=16, num_layers=1, num_heads=2)  # GPT-2, tied
    entry = TeacherStore(tmp_path).save("k", lm, {}, {"test": {}})
    assert (entry / WEIGHTS).is_file() and not (entry / LEGACY_WEIGHTS).exists()
    assert json.loads((entry / "manifest.json").read_text())["sha256"].keys() == {WEIGHTS}
    with safe_open(entry / WEIGHTS, framework="pt") as f:
        stored, tied = set(f.keys()), json.loads(f.metadata()["tied"])
    assert tied == {"model.lm_head.weight": "model.transformer.wte.weight"} and "model.lm_head.weight" not in stored
    other = build_causal_lm(vocab_size=40, context=8, hidden_size=16, num_layers=1, num_heads=2)
    load_teacher_weights(other, entry)
    _same(lm, other)
    assert other.model.lm_head.weight.data_ptr() == other.model.transformer.wte.weight.data_ptr()


def test_an_old_weights_pt_entry_still_loads(tmp_path, tiny_vit):
    model = tiny_vit()
    with atomic_entry(tmp_path, "old", checked=(LEGACY_WEIGHTS,)) as tmp:  # as the store wrote entries before
        torch.save(model.state_dict(), tmp / LEGACY_WEIGHTS)
        (tmp / "metrics.json").write_text(json.dumps({"test": {"acc": 0.5}}))
    store = TeacherStore(tmp_path)
    assert store.lookup("old") == tmp_path / "old"
    other = tiny_vit()
    load_teacher_weights(other, store.path("old"))
    _same(model, other)
    load_teacher_weights(other, store.path("old") / LEGACY_WEIGHTS)  # the file itself, weights_only=True


def test_a_damaged_safetensors_entry_is_removed(tmp_path, tiny_vit):
    store = TeacherStore(tmp_path)
    entry = store.save("k", tiny_vit(), {}, {"test": {}})
    data = (entry / WEIGHTS).read_bytes()
    (entry / WEIGHTS).write_bytes(data[: len(data) // 2])
    assert store.lookup("k") is None and not entry.exists()
