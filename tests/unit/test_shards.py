"""Teacher outputs as shards (teachers/shards.py, capture.py): rows gathered across shards,
shards that do not depend on which process or run computed them, and a file anyone can read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.models import build_causal_lm
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.capture import capture_folder, capture_shards, compute_shard, finish_entry
from distillab.teachers.ensemble import Teachers
from distillab.teachers.shards import ShardedOutputs, shard_ranges

VOCAB, CONTEXT, ROWS = 500, 12, 10


def test_shard_ranges_cover_the_split_once():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(8, 4) == [(0, 4), (4, 8)] and shard_ranges(3, 100) == [(0, 3)]


def test_rows_gathered_across_shards_in_any_order_with_repeats():
    full = {"0.logits": torch.randn(10, 3), "0.hidden_states.1": torch.randn(10, 2, 4)}
    shards = ShardedOutputs.in_memory([(s, {k: v[s:e] for k, v in full.items()}) for s, e in shard_ranges(10, 4)])
    index = torch.tensor([9, 0, 4, 4, 3, 8, 7, 1])
    rows = shards.rows(index)
    for name, value in full.items():
        assert torch.equal(rows[name], value[index])
    assert shards.rows_total == 10 and shards.nbytes == sum(v.numel() * 4 for v in full.values())


def lm_teacher_and_blocks():
    torch.manual_seed(0)
    teacher = build_causal_lm(vocab_size=VOCAB, context=CONTEXT, hidden_size=32, num_layers=1, num_heads=2)
    ids = torch.randint(0, VOCAB, (ROWS, CONTEXT), generator=torch.Generator().manual_seed(1))
    dataset = IndexedTensorDataset({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.zeros(ROWS))
    return Teachers([FrozenTeacher(teacher)]), dataset


def test_a_shard_read_with_safetensors_and_numpy_alone_gives_the_teachers_distribution(tmp_path):
    """docs/capture.md's schema: ids, log-probabilities at T and the rest's mass, row i of the
    split at row i - start of its shard."""
    teachers, dataset = lm_teacher_and_blocks()
    request = SplitRequest("train", dataset, topk=16, topk_temperature=2.0, batch_size=3)
    cache = TeacherOutputCache("disk", tmp_path, shard_rows=4)
    cache.prepare(teachers, request)
    entry = tmp_path / "outputs" / cache.built[0]
    manifest = json.loads((entry / "manifest.json").read_text())
    row, position = 6, 5
    shard = next(s for s in manifest["shards"] if s["start"] <= row < s["stop"])
    tensors = load_file(str(entry / shard["file"]))  # no torch, no distillab
    ids = tensors["0.topk.indices"][row - shard["start"], position].astype(np.int64)
    log_probs = tensors["0.topk.log_probs"][row - shard["start"], position].astype(np.float64)
    tail = float(tensors["0.topk.tail"][row - shard["start"], position])

    with torch.no_grad():
        logits = teachers.members[0](dataset.batch(torch.tensor([row]))["inputs"]).logits
    p = torch.softmax(logits[0, position].double() / 2.0, -1).numpy()
    top = np.argsort(-p)[:16]
    assert set(ids.tolist()) == set(top.tolist())
    np.testing.assert_allclose(np.exp(log_probs), p[ids], rtol=2e-3, atol=1e-5)
    assert np.exp(log_probs).sum() + tail == pytest.approx(1.0, abs=2e-3)
    assert manifest["tensors"]["0.topk.indices"] == {"dtype": "I16", "row_shape": [CONTEXT, 16]}
    assert manifest["rows"] == ROWS and [s["start"] for s in manifest["shards"]] == [0, 4, 8]


def test_a_shard_is_the_same_computed_alone_as_in_a_whole_capture_sampled_slots_included(tmp_path):
    teachers, dataset = lm_teacher_and_blocks()
    request = SplitRequest("train", dataset, topk=16, topk_samples=6, batch_size=3)
    whole = capture_shards(teachers, request, "k" * 20, tmp_path / "a", rows_per_shard=4)
    alone = compute_shard(teachers, request, "k" * 20, 2, rows_per_shard=4)  # the last shard, by itself
    stored = load_file(str(capture_folder(tmp_path / "a", "k" * 20) / whole.records[2].file))
    for name, value in alone.tensors.items():
        assert np.array_equal(stored[name], value.numpy())
    other_key = compute_shard(teachers, request, "j" * 20, 2, rows_per_shard=4)
    assert not torch.equal(other_key.tensors["0.topk.indices"], alone.tensors["0.topk.indices"]), "own draws"


def test_only_the_unfinished_shards_are_computed_again_and_an_unfinished_capture_is_no_entry(tmp_path):
    teachers, dataset = lm_teacher_and_blocks()
    request = SplitRequest("train", dataset, topk=8, batch_size=3)
    first = capture_shards(teachers, request, "k" * 20, tmp_path, rows_per_shard=4, numbers=[0, 2])
    assert first.computed == 2
    with pytest.raises(RuntimeError, match="shard-00001.safetensors is missing"):
        finish_entry(tmp_path, "k" * 20, request, 4)
    folder = capture_folder(tmp_path, "k" * 20)
    (folder / "shard-00002.safetensors").write_bytes(b"cut short")  # damaged: computed again
    again = capture_shards(teachers, request, "k" * 20, tmp_path, rows_per_shard=4)
    assert (again.computed, again.reused) == (2, 1)
    entry = finish_entry(tmp_path, "k" * 20, request, 4)
    assert entry == tmp_path / ("k" * 20) and not folder.exists()
    assert ShardedOutputs.open(entry).rows(torch.arange(ROWS))["0.topk.indices"].shape == (ROWS, CONTEXT, 8)


def test_over_budget_the_capture_keeps_nothing(tmp_path):
    teachers, dataset = lm_teacher_and_blocks()
    request = SplitRequest("train", dataset, topk=8, batch_size=3)
    assert capture_shards(teachers, request, "k" * 20, tmp_path, 4, budget_bytes=100) is None
    assert not capture_folder(tmp_path, "k" * 20).exists()
