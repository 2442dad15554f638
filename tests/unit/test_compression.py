"""Compression report: counts of weights and zeros, size on disk, latency, accuracy, table."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from distillab.core.config import ConfigError
from distillab.evaluation.compression import (
    accuracy,
    add_speedups,
    compression_markdown,
    compression_row,
    count_nonzero,
    count_parameters,
    example_inputs,
    latency_ms,
    size_on_disk,
)
from distillab.models import ModelOutput


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_count_nonzero_is_params_minus_the_weights_zeroed_by_hand(tiny_vit):
    model = tiny_vit()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)  # HF init leaves biases at exactly 0; start from no zeros at all
        first, last = _linears(model)[0], _linears(model)[-1]
        first.weight[:3, :5] = 0.0  # 15
        last.weight[0, :7] = 0.0  # 7
        last.bias[2] = 0.0  # 1
    params = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == params == model.num_parameters
    assert count_nonzero(model) == params - 23


def test_pruning_masks_count_the_effective_weight_once(tiny_vit):
    model = tiny_vit()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    params = count_parameters(model)
    linear = _linears(model)[0]
    mask = torch.ones_like(linear.weight)
    mask.view(-1)[:40] = 0
    prune.custom_from_mask(linear, "weight", mask)
    # weight_orig still holds the ones; only orig * mask is what the forward uses.
    assert int(torch.count_nonzero(linear.weight_orig)) == linear.weight_orig.numel()
    assert count_parameters(model) == params
    assert count_nonzero(model) == params - 40
    masked_size = size_on_disk(model)
    prune.remove(linear, "weight")
    assert count_nonzero(model) == params - 40
    assert size_on_disk(model) == masked_size  # the masked form is measured as it will be saved


def test_zeros_from_pruning_compress_while_dense_bytes_stay_the_same(tiny_vit):
    torch.manual_seed(0)
    dense = tiny_vit()
    sparse = copy.deepcopy(dense)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for linear in _linears(sparse):
            linear.weight.mul_((torch.rand(linear.weight.shape, generator=g) >= 0.9).float())
    d, s = size_on_disk(dense), size_on_disk(sparse)
    assert d["dense_bytes"] == s["dense_bytes"]
    assert s["compressed_bytes"] < 0.5 * d["compressed_bytes"]
    assert d["compressed_bytes"] < d["dense_bytes"]  # zlib gains something on the format itself
    assert count_nonzero(sparse) < 0.25 * count_nonzero(dense)


def test_latency_is_positive_and_grows_with_the_batch(tiny_vit, digits):
    model = tiny_vit(hidden_size=64, intermediate_size=128)
    one, many = example_inputs(digits, 1), example_inputs(digits, 64)
    assert one.shape == (1, 1, 8, 8) and many.shape == (64, 1, 8, 8)
    model.train()
    threads = torch.get_num_threads()
    t1, t64 = latency_ms(model, one), latency_ms(model, many)
    assert model.training and torch.get_num_threads() == threads  # the caller's settings are restored
    assert 0 < t1 < math.inf and 0 < t64 < math.inf
    assert t64 > t1
    with pytest.raises(ConfigError, match="repeats"):
        latency_ms(model, one, repeats=0)


class _Loader:
    """A stand-in data module whose test split is a list of batches."""

    def __init__(self, batches):
        self.batches = batches

    def eval_loader(self, split):
        return self.batches


def test_example_inputs_from_dict_batches_cycle_a_small_split():
    ids = torch.arange(10).view(5, 2)
    dm = _Loader(
        [
            {"inputs": {"input_ids": ids[:3], "attention_mask": ids[:3] > 0}},
            {"inputs": {"input_ids": ids[3:], "attention_mask": ids[3:] > 0}},
        ]
    )
    out = example_inputs(dm, 8)
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"][:, 0].tolist() == [0, 2, 4, 6, 8, 0, 2, 4]
    with pytest.raises(ConfigError, match="batch_size"):
        example_inputs(dm, 0)


class _HalfRightOracle(nn.Module):
    """Looks each test image up in the split; right for labels 0-4, off by one for 5-9."""

    def __init__(self, dataset):
        super().__init__()
        self.images = dataset.inputs.flatten(1)
        self.labels = dataset.labels

    def forward(self, x):
        hit = (x.flatten(1)[:, None, :] == self.images[None]).all(-1)
        assert bool((hit.sum(1) == 1).all())
        label = self.labels[hit.float().argmax(1)]
        predicted = torch.where(label < 5, label, (label + 1) % 10)
        return ModelOutput(logits=nn.functional.one_hot(predicted, 10).float())


def test_accuracy_of_a_model_whose_logits_are_known(digits):
    labels = digits.splits["test"].labels.tolist()
    by_hand = sum(1 for y in labels if y < 5) / len(labels)
    assert 0.3 < by_hand < 0.7
    assert accuracy(_HalfRightOracle(digits.splits["test"]), digits.test_dataloader()) == pytest.approx(by_hand)


def test_compression_row_and_markdown_table(digits):
    oracle = _HalfRightOracle(digits.splits["test"])
    row = compression_row("oracle", oracle, digits, reference_acc=1.0)
    assert set(row) == {
        "name",
        "params",
        "nonzero_params",
        "dense_bytes",
        "compressed_bytes",
        "latency_ms_b1",
        "latency_ms_b64",
        "test_acc",
        "retention",
    }
    assert row["params"] == 0 and row["retention"] == pytest.approx(row["test_acc"])
    other = {**row, "name": "int8 | pruned", "retention": None}
    table = compression_markdown([row, other])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and all(line.count(" | ") == 10 for line in lines[2:])
    assert "| oracle |" in table and "int8 \\| pruned" in table
    with pytest.raises(ConfigError, match="reference_acc"):
        compression_row("x", oracle, digits, reference_acc=0.0)
    with pytest.raises(ValueError):
        compression_markdown([])


def test_speedups_are_the_reference_latency_over_each_rows():
    rows = {
        "teacher": {"latency_ms_b1": 4.0, "latency_ms_b64": 30.0},
        "student": {"latency_ms_b1": 1.0, "latency_ms_b64": 10.0},
    }
    add_speedups(rows, "teacher")
    assert rows["teacher"]["speedup_b1"] == 1.0 and rows["student"]["speedup_b1"] == 4.0
    assert rows["student"]["speedup_b64"] == 3.0
