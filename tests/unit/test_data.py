"""The digits DataModule: a fixed stratified split, dict batches, stable sample indices."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.data import DigitsDataModule


def test_split_sizes_disjoint_and_fixed(digits):
    sizes = {k: len(v) for k, v in digits.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 270 and sizes["val"] == 270
    other = DigitsDataModule()
    other.setup()
    for split in ("train", "val", "test"):
        torch.testing.assert_close(other.splits[split].inputs, digits.splits[split].inputs)
    flat = {split: {tuple(x.flatten().tolist()) for x in ds.inputs} for split, ds in digits.splits.items()}
    # digits has a few duplicated images; the splits must still be (almost) disjoint by row
    assert len(flat["train"] & flat["test"]) < 5


def test_batches_are_dicts_with_index_into_the_split(digits):
    batch = next(iter(digits.train_dataloader()))
    assert set(batch) == {"inputs", "labels", "index"}
    assert batch["inputs"].shape == (64, 1, 8, 8) and batch["inputs"].max() <= 1.0
    assert batch["labels"].dtype == torch.long and batch["index"].dtype == torch.long
    ds = digits.splits["train"]
    torch.testing.assert_close(ds.inputs[batch["index"]], batch["inputs"])
    torch.testing.assert_close(ds.labels[batch["index"]], batch["labels"])


def test_shuffled_epoch_visits_every_index_once(digits):
    seen = torch.cat([b["index"] for b in digits.train_dataloader()])
    assert sorted(seen.tolist()) == list(range(len(digits.splits["train"])))


def test_bad_knobs():
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(batch_size=0)
    assert err.value.key == "batch_size"
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(val_fraction=0.5, test_fraction=0.5)
    assert err.value.key == "val_fraction"
