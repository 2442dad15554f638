"""Teacher output cache: lookups equal live forwards, keys follow weights and data, disk reuse."""

from __future__ import annotations

import logging

import torch

from distillab.data import DigitsDataModule
from distillab.data.images.digits_domains import DigitsDomainsDataModule
from distillab.models.output import ModelOutput
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache, flatten, unflatten
from distillab.teachers.ensemble import Teachers
from distillab.teachers.shards import MANIFEST, ShardedOutputs

TOL = dict(rtol=1e-5, atol=1e-6)


def assert_same(a, b) -> None:
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        torch.testing.assert_close(fa[k], fb[k], **TOL)


def live(teachers: Teachers, dataset, idx: torch.Tensor, **needs):
    return teachers(dataset.batch(idx), **needs)


def test_flatten_unflatten_round_trip():
    one = ModelOutput(torch.randn(3, 4), (torch.randn(3, 2, 5),) * 2, None)
    two = [one, ModelOutput(torch.randn(3, 4))]
    for out in (one, two):
        back = unflatten(flatten(out))
        assert_same(back, out)
        assert isinstance(back, list) == isinstance(out, list)
    assert unflatten(flatten(one)).attentions is None


def test_memory_cache_equals_live_forward_for_shuffled_indices(digits, tiny_vit):
    teachers = Teachers([FrozenTeacher(tiny_vit()), FrozenTeacher(tiny_vit(num_layers=1))])
    train = digits.splits["train"]
    cache = TeacherOutputCache("memory")
    cache.prepare(teachers, SplitRequest("train", train, hidden_states=True, attentions=True, batch_size=100))
    idx = torch.randperm(len(train))[:64]
    cached = cache.lookup("train", idx)
    assert isinstance(cached, list) and cached[0].attentions is not None and len(cached[1].hidden_states) == 2
    assert_same(cached, live(teachers, train, idx, hidden_states=True, attentions=True))
    assert cache.lookup("val", idx) is None  # never prepared: the caller runs the teacher


def test_routed_teachers_are_cached_per_sample_domain(tiny_vit):
    data = DigitsDomainsDataModule()
    data.setup()
    teachers = Teachers([FrozenTeacher(tiny_vit()), FrozenTeacher(tiny_vit(hidden_size=16))], route_by_domain=True)
    cache = TeacherOutputCache("memory")
    cache.prepare(teachers, SplitRequest("val", data.splits["val"]))
    idx = torch.arange(len(data.splits["val"])).flip(0)
    assert_same(cache.lookup("val", idx), live(teachers, data.splits["val"], idx))


def test_cached_outputs_can_be_saved_for_backward(digits, tiny_vit):
    """Made under inference_mode, yet a loss that saves them for backward must work."""
    teachers = Teachers([FrozenTeacher(tiny_vit())])
    cache = TeacherOutputCache("memory")
    cache.prepare(teachers, SplitRequest("train", digits.splits["train"], hidden_states=True))
    target = cache.lookup("train", torch.arange(8)).hidden_states[-1]
    student = torch.randn(target.shape, requires_grad=True)
    torch.nn.functional.cosine_similarity(student, target, dim=-1).sum().backward()
    live_target = teachers(digits.splits["train"].batch(torch.arange(8)), hidden_states=True).hidden_states[-1]
    torch.nn.functional.cosine_similarity(student, live_target, dim=-1).sum().backward()


def test_disk_cache_is_reused_by_a_later_run_and_rebuilt_when_a_weight_changes(digits, tiny_vit, tmp_path):
    model = tiny_vit()
    teachers = Teachers([FrozenTeacher(model)])
    val = digits.splits["val"]
    first = TeacherOutputCache("disk", tmp_path)
    first.prepare(teachers, SplitRequest("val", val))
    assert len(first.built) == 1
    entries = [p for p in (tmp_path / "outputs").iterdir() if p.is_dir()]
    assert [p.name for p in entries] == first.built and (entries[0] / MANIFEST).is_file()
    assert len(list(entries[0].glob("shard-*.safetensors"))) == 1

    later = TeacherOutputCache("disk", tmp_path)  # a new run: nothing computed, read from disk
    later.prepare(teachers, SplitRequest("val", val))
    assert later.built == []
    idx = torch.tensor([5, 0, 17])
    assert_same(later.lookup("val", idx), live(teachers, val, idx))

    with torch.no_grad():
        model.model.classifier.weight[0, 0] += 1.0  # one weight of the teacher
    changed = TeacherOutputCache("disk", tmp_path)
    changed.prepare(teachers, SplitRequest("val", val))
    assert len(changed.built) == 1 and changed.built != first.built
    assert_same(changed.lookup("val", idx), live(teachers, val, idx))


def test_other_data_or_other_requests_get_their_own_entries(tiny_vit, tmp_path):
    teachers = Teachers([FrozenTeacher(tiny_vit())])
    a, b = DigitsDataModule(split_seed=0), DigitsDataModule(split_seed=1)
    a.setup(), b.setup()
    cache = TeacherOutputCache("disk", tmp_path)
    keys = {
        cache.key(teachers, SplitRequest("val", a.splits["val"])),
        cache.key(teachers, SplitRequest("val", b.splits["val"])),
        cache.key(teachers, SplitRequest("val", a.splits["val"], hidden_states=True)),
        cache.key(teachers, SplitRequest("val", a.splits["val"], precision="bf16-mixed")),
    }
    assert len(keys) == 4


def test_damaged_cache_file_is_detected_and_rebuilt(digits, tiny_vit, tmp_path):
    teachers = Teachers([FrozenTeacher(tiny_vit())])
    val = digits.splits["val"]
    TeacherOutputCache("disk", tmp_path).prepare(teachers, SplitRequest("val", val))
    (outputs,) = (tmp_path / "outputs").glob("*/shard-00000.safetensors")
    outputs.write_bytes(outputs.read_bytes()[:100])
    again = TeacherOutputCache("disk", tmp_path)
    again.prepare(teachers, SplitRequest("val", val))
    assert len(again.built) == 1
    assert_same(again.lookup("val", torch.arange(4)), live(teachers, val, torch.arange(4)))


def test_over_budget_or_augmented_splits_are_left_to_the_live_teacher(digits, tiny_vit, caplog):
    caplog.set_level(logging.INFO)
    teachers = Teachers([FrozenTeacher(tiny_vit())])
    small = TeacherOutputCache("memory", budget_mb=0.01)
    small.prepare(teachers, SplitRequest("train", digits.splits["train"], hidden_states=True))
    assert not small.cached("train") and "cache_budget_mb" in caplog.text
    augmented = TeacherOutputCache("memory")
    augmented.prepare(teachers, SplitRequest("train", digits.splits["train"], inputs_vary=True))
    assert not augmented.cached("train") and "augmented" in caplog.text
    assert augmented.lookup("train", torch.arange(3)) is None


def test_only_the_layers_the_loss_maps_are_cached(digits, tiny_vit):
    from distillab.losses import CompositeLoss, HiddenStateLoss, SoftTargetKL

    teacher_model, student = tiny_vit(num_layers=2), tiny_vit(num_layers=1, hidden_size=16)
    loss = CompositeLoss({"kd": SoftTargetKL(), "hidden": HiddenStateLoss("cosine", "last")}, {"kd": 1, "hidden": 1})
    loss.setup(student.shape, [teacher_model.shape])
    keep = loss.teacher_tensors()
    assert keep == {"0.hidden_states.2"}  # embeddings + 2 layers: the last is index 2
    teachers = Teachers([FrozenTeacher(teacher_model)])
    train = digits.splits["train"]
    cache = TeacherOutputCache("memory")
    cache.prepare(teachers, SplitRequest("train", train, hidden_states=True, keep=keep))
    idx = torch.randperm(len(train))[:16]
    cached = cache.lookup("train", idx)
    assert cached.hidden_states[0] is None and cached.hidden_states[1] is None
    full = live(teachers, train, idx, hidden_states=True)
    torch.testing.assert_close(cached.hidden_states[2], full.hidden_states[2])
    torch.testing.assert_close(cached.logits, full.logits)
    batch = {"inputs": train.batch(idx)["inputs"], "labels": train.labels[idx]}
    out = student(batch["inputs"], hidden_states=True)
    torch.testing.assert_close(loss(out, cached, batch).total, loss(out, full, batch).total)


def _lm_teacher_and_blocks(vocab: int = 300, seed: int = 0):
    from distillab.data.tensor_datamodule import IndexedTensorDataset
    from distillab.models import build_causal_lm

    torch.manual_seed(seed)
    teacher = build_causal_lm(vocab_size=vocab, context=16, hidden_size=32, num_layers=1, num_heads=2)
    ids = torch.randint(0, vocab, (10, 16), generator=torch.Generator().manual_seed(1))
    dataset = IndexedTensorDataset({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.zeros(10))
    return Teachers([FrozenTeacher(teacher)]), dataset


def test_topk_cache_of_a_language_model_teacher(tmp_path):
    from distillab.losses import TokenDivergence, TopK

    teachers, dataset = _lm_teacher_and_blocks(vocab=300)
    idx = torch.tensor([7, 2, 5])
    dense = live(teachers, dataset, idx)
    student = ModelOutput(torch.randn(3, 16, 300))
    loss = TokenDivergence("forward_kl", temperature=2.0)

    # k = V: the sparse form gives the dense loss.
    full = TeacherOutputCache("memory")
    full.prepare(teachers, SplitRequest("train", dataset, topk=300, topk_temperature=2.0))
    sparse = full.lookup("train", idx)
    assert isinstance(sparse, TopK) and sparse.indices.shape == (3, 16, 300)
    torch.testing.assert_close(loss(student, sparse, {}), loss(student, dense, {}), rtol=2e-3, atol=1e-4)

    # k = 8 on disk: ids in int16, values in half precision; 60x smaller than fp32 logits; built once,
    # reused by a later run; another teacher weight gives another entry.
    request = SplitRequest("train", dataset, topk=8, topk_temperature=2.0)
    first = TeacherOutputCache("disk", tmp_path)
    first.prepare(teachers, request)
    entry = tmp_path / "outputs" / first.built[0]
    stored = ShardedOutputs.open(entry).shards[0]
    assert stored["0.topk.indices"].dtype == torch.int16 and stored["0.topk.log_probs"].dtype == torch.float16
    sparse_bytes = sum(v.numel() * v.element_size() for v in stored.values())
    assert 10 * 16 * 300 * 4 / sparse_bytes >= 10
    again = TeacherOutputCache("disk", tmp_path)
    again.prepare(teachers, request)
    assert again.built == [] and torch.equal(again.lookup("train", idx).indices, first.lookup("train", idx).indices)
    with torch.no_grad():
        next(teachers.parameters()).add_(1e-3)
    changed = TeacherOutputCache("disk", tmp_path)
    changed.prepare(teachers, request)
    assert changed.built and changed.built[0] != first.built[0]


def test_sampled_topk_cache_is_the_same_when_built_twice_and_keyed_apart_from_plain_topk(tmp_path):
    teachers, dataset = _lm_teacher_and_blocks(vocab=300)
    request = SplitRequest("train", dataset, topk=8, topk_samples=6, batch_size=4)
    first, second = TeacherOutputCache("disk", tmp_path / "a"), TeacherOutputCache("disk", tmp_path / "b")
    first.prepare(teachers, request)
    second.prepare(teachers, request)
    idx = torch.arange(10)
    a, b = first.lookup("train", idx), second.lookup("train", idx)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.log_probs, b.log_probs)
    assert torch.equal(a.tail, torch.zeros_like(a.tail))  # the draws place the rest's mass
    plain = TeacherOutputCache("memory")
    plain.prepare(teachers, SplitRequest("train", dataset, topk=8, batch_size=4))
    assert plain.key(teachers, SplitRequest("train", dataset, topk=8)) != first.built[0]
    assert torch.equal(plain.lookup("train", idx).indices[..., :2], a.indices[..., :2])  # the exact head
