"""MNIST / Fashion-MNIST from IDX files: reading, clear errors, download, the fixed split; the MLP."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distillab.core.config import ConfigError
from distillab.data import FashionMNISTDataModule, MNISTDataModule
from distillab.data.images.idx import IDXError, read_idx
from distillab.models import build_mlp

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MNIST = SHARED / "mnist"
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"MNIST's IDX files are not in {MNIST} (../shared/data of the repository)",
)
needs_fashion = pytest.mark.skipif(
    not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed in {FASHION} (apt-get install -y dataset-fashion-mnist)",
)
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written by hand from the format's definition."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def test_read_idx_by_hand_plain_and_gzipped(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    (tmp_path / "b").write_bytes(idx_bytes(ints, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "a"), images)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "b"), ints) and read_idx(tmp_path / "b").dtype == np.int32


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\0", "padded"),
        (lambda b: b[:6], "header"),
        (lambda b: b"\x89PNG" + b[4:], "not an IDX file"),
    ],
)
def test_damaged_idx_names_the_file_and_the_problem(tmp_path, damage, words):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(damage(idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8))))
    with pytest.raises(IDXError, match=words) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_files_are_a_config_error_that_says_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError) as err:
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    assert err.value.key == "data_dir" and "train-images-idx3-ubyte" in str(err.value)
    assert "download=true" in str(err.value)
    with pytest.raises(ConfigError, match="apt-get install -y dataset-fashion-mnist"):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()


@needs_mnist
def test_a_cut_off_download_is_a_config_error_naming_the_file(tmp_path):
    for name in FILES:
        shutil.copy(MNIST / f"{name}.gz", tmp_path)
    damaged = tmp_path / "t10k-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:100_000])
    with pytest.raises(ConfigError) as err:
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    assert err.value.key == "data_dir" and str(damaged) in str(err.value) and "truncated" in str(err.value)


@needs_mnist
def test_mnist_splits_are_the_official_test_set_and_a_seeded_val_split():
    dm = MNISTDataModule(data_dir=str(MNIST), val_size=5000, split_seed=0)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 55000, "val": 5000, "test": 10000}
    train, test = dm.splits["train"], dm.splits["test"]
    assert train.inputs.shape[1:] == (1, 28, 28) and train.inputs.dtype == torch.float32
    assert 0.0 == train.inputs.min() and train.inputs.max() == 1.0
    # The official test labels, in the published order.
    assert torch.equal(test.labels, torch.from_numpy(read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)))
    again = MNISTDataModule(data_dir=str(MNIST), split_seed=0)
    again.setup()
    assert torch.equal(again.splits["val"].inputs, dm.splits["val"].inputs)
    other = MNISTDataModule(data_dir=str(MNIST), split_seed=1)
    other.setup()
    assert not torch.equal(other.splits["val"].labels, dm.splits["val"].labels)
    # Stratified: each class's share of the validation split is its share of the 60,000.
    full = torch.from_numpy(read_idx(MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64)).bincount() / 60000
    assert (dm.splits["val"].labels.bincount() / 5000 - full).abs().max() < 0.001


@needs_mnist
def test_max_train_samples_is_a_stratified_seeded_subset():
    dm = MNISTDataModule(data_dir=str(MNIST), max_train_samples=1000, val_size=500)
    dm.setup()
    full = torch.from_numpy(read_idx(MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64)).bincount() / 60000
    assert len(dm.splits["train"]) == 1000
    assert (dm.splits["train"].labels.bincount() / 1000 - full).abs().max() < 0.002
    assert len(dm.splits["test"]) == 10000


@needs_mnist
def test_download_fetches_checks_and_reuses(tmp_path):
    mirror = f"file://{MNIST}"
    target = tmp_path / "mnist"

    class Local(MNISTDataModule):
        mirrors = ("file:///nonexistent-mirror", mirror)  # the first fails; the next one serves

    dm = Local(data_dir=str(target), download=True, val_size=100)
    dm.setup()
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in FILES)
    assert len(dm.splits["test"]) == 10000

    class Tampered(Local):
        checksums = {**MNISTDataModule.checksums, "t10k-labels-idx1-ubyte.gz": "sha256:" + "0" * 64}

    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="is not the published") as err:
        Tampered(data_dir=str(target), download=True).setup()
    assert err.value.key == "download"
    assert not (target / "t10k-labels-idx1-ubyte.gz").exists()  # nothing half-written stays behind


@needs_fashion
def test_fashion_mnist_from_the_debian_package():
    dm = FashionMNISTDataModule(data_dir=str(FASHION), val_size=5000)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    assert dm.splits["test"].labels.bincount().tolist() == [1000] * 10


def test_mlp_matches_hinton_sizes_and_returns_layer_states():
    teacher = build_mlp(10, 28, 1, hidden_sizes=[1200, 1200], dropout=0.5, input_dropout=0.2)
    assert teacher.num_parameters == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    out = teacher.eval()(torch.rand(3, 1, 28, 28), hidden_states=True)
    assert out.logits.shape == (3, 10) and [h.shape[1] for h in out.hidden_states] == [784, 1200, 1200]
    assert (out.hidden_states[1] >= 0).all()  # ReLU
    # Dropout acts only in training mode: eval outputs are deterministic.
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(teacher(x).logits, teacher(x).logits)
    for bad in ([], [0, 5], "big"):
        with pytest.raises(ConfigError):
            build_mlp(10, 28, 1, hidden_sizes=bad)
