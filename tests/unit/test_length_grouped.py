"""Length-grouped batches: a permutation, little padding, reproducible under a seed."""

import lightning as L
import pytest
import torch

from conftest import SHARED_DATA
from distillab.data import TextClassificationDataModule
from distillab.data.length_grouped import LengthGroupedSampler, length_grouped_order
from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.models import build_bert
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.ensemble import Teachers


def padded_tokens(order: torch.Tensor, lengths: torch.Tensor, batch_size: int) -> int:
    return sum(int(lengths[b].max()) * len(b) for b in torch.split(order, batch_size))


def test_order_is_a_permutation_with_far_less_padding_than_random():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 64, (5000,), generator=g)
    order = length_grouped_order(lengths, 32, torch.Generator().manual_seed(1))
    assert torch.equal(order.sort().values, torch.arange(5000))
    random = torch.randperm(5000, generator=g)
    assert padded_tokens(order, lengths, 32) < 0.7 * padded_tokens(random, lengths, 32)
    # Batches come in random order, not sorted from longest to shortest overall.
    batch_max = torch.stack([lengths[b].max() for b in torch.split(order, 32)[:-1]])
    assert not torch.equal(batch_max, batch_max.sort(descending=True).values)


def test_sampler_is_reproducible_under_seed_everything_and_new_each_epoch():
    lengths = torch.randint(1, 50, (300,), generator=torch.Generator().manual_seed(0))
    sampler = LengthGroupedSampler(lengths, 16)
    L.seed_everything(3, verbose=False)
    first, second = list(sampler), list(sampler)
    L.seed_everything(3, verbose=False)
    assert list(sampler) == first and first != second and sorted(first) == list(range(300))


def test_batches_are_cut_to_their_longest_sequence():
    mask = torch.zeros(4, 10, dtype=torch.long)
    for i, n in enumerate((2, 5, 3, 1)):
        mask[i, :n] = 1
    ds = IndexedTensorDataset({"input_ids": mask * 7, "attention_mask": mask}, torch.zeros(4), dynamic_padding=True)
    assert ds.batch(torch.tensor([0, 2]))["inputs"]["input_ids"].shape == (2, 3)
    assert ds.batch(torch.tensor([0, 2]), full_length=True)["inputs"]["attention_mask"].shape == (2, 10)


def test_cache_built_at_full_length_serves_batches_cut_to_their_longest(tmp_path):
    """The cache stores every token position; a length-grouped, cut batch reads the same
    hidden states and attention maps at its real positions as a live teacher computes."""
    if not (SHARED_DATA / "sst2" / "train.tsv").is_file():
        pytest.skip(f"SST-2 is not in {SHARED_DATA} (the repository's ../shared/data)")
    dm = TextClassificationDataModule(
        data_dir=str(SHARED_DATA / "sst2"),
        train_file="train.tsv",
        val_file="dev.tsv",
        test_file="test.tsv",
        header=True,
        text_column="sentence",
        label_column="label",
        max_train_samples=300,
        max_length=64,
        tokenizer_dir=str(tmp_path),
        batch_size=32,
    )
    dm.setup()
    torch.manual_seed(0)
    teachers = Teachers(
        [
            FrozenTeacher(
                build_bert(
                    **dm.model_kwargs,
                    hidden_size=32,
                    num_layers=2,
                    num_heads=2,
                    intermediate_size=64,
                    dropout=0.0,
                    attn_implementation="eager",
                )
            )
        ]
    )
    train = dm.splits["train"]
    cache = TeacherOutputCache("memory")
    cache.prepare(teachers, SplitRequest("train", train, hidden_states=True, attentions=True, batch_size=128))
    batch = next(iter(dm.train_dataloader()))
    length = batch["inputs"]["attention_mask"].shape[1]
    assert length < 64  # cut
    cached = cache.lookup("train", batch["index"], seq_len=length)
    fresh = teachers(batch, hidden_states=True, attentions=True)
    mask = batch["inputs"]["attention_mask"].bool()
    torch.testing.assert_close(cached.logits, fresh.logits, rtol=1e-4, atol=1e-5)
    for c, f in zip(cached.hidden_states, fresh.hidden_states):
        torch.testing.assert_close(c[mask], f[mask], rtol=1e-4, atol=1e-5)
    for c, f in zip(cached.attentions, fresh.attentions):
        assert c.shape == f.shape
        torch.testing.assert_close(c[:, :, mask[0]][..., mask[0]], f[:, :, mask[0]][..., mask[0]], rtol=1e-4, atol=1e-5)
