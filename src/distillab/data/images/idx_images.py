"""MNIST and Fashion-MNIST from their original IDX files in ``data_dir`` (gzipped or not).

Images are scaled from 0..255 to [0, 1] and shaped [N, 1, 28, 28]. The validation split
is carved from the 60,000 training images (stratified, ``split_seed``), so the official
10,000 test images stay the test set and every run and teacher is measured on them.
Nothing is downloaded unless ``download=true``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from distillab.core.config import ConfigError, check_choice, check_int
from distillab.data.images.idx import IDXError, fetch, find_idx, read_idx
from distillab.data.images.image_datamodule import ImageDataModule
from distillab.data.split import stratified_pick

log = logging.getLogger(__name__)

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXImageDataModule(ImageDataModule):
    """28x28 grey images in IDX files; subclasses name the files' source and checksums."""

    num_classes = 10
    image_size = 28
    num_channels = 1
    max_random_shift = 4
    name = "IDX images"
    mirrors: tuple[str, ...] = ()
    checksums: dict[str, str] = {}  # file name -> "<algorithm>:<hex>" as published
    how_to_get = "set data.download=true to fetch the official files"

    def __init__(
        self,
        data_dir: str,
        download: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        max_train_samples: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        random_shift: int = 0,
        labelled_fraction: float = 1.0,
        label_seed: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, random_shift, labelled_fraction, label_seed)
        self.data_dir = Path(str(data_dir)).expanduser()
        self.download = check_choice("download", download, (True, False))
        self.val_size = check_int("val_size", val_size, low=1, high=30000)
        self.split_seed = check_int("split_seed", split_seed, low=0)
        self.max_train_samples = (
            None if max_train_samples is None else check_int("max_train_samples", max_train_samples, low=10)
        )

    def _file(self, stem: str) -> Path:
        path = find_idx(self.data_dir, stem)
        if path is None and self.download:
            try:
                path = fetch(f"{stem}.gz", self.data_dir, list(self.mirrors), self.checksums.get(f"{stem}.gz"))
            except IDXError as err:
                raise ConfigError(
                    "download",
                    True,
                    f"{err}; check the connection, or put the files in data.data_dir={self.data_dir} by hand",
                ) from err
        if path is None:
            raise ConfigError(
                "data_dir", str(self.data_dir), f"has no {stem}.gz (or {stem}) of {self.name}; {self.how_to_get}"
            )
        return path

    def _read(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        image_stem, label_stem = STEMS[split]
        try:
            images, labels = read_idx(self._file(image_stem)), read_idx(self._file(label_stem))
        except IDXError as err:
            raise ConfigError("data_dir", str(self.data_dir), f"{err}; delete it and {self.how_to_get}") from err
        if (
            images.ndim != 3
            or images.shape[1:] != (self.image_size, self.image_size)
            or labels.shape != images.shape[:1]
        ):
            raise ConfigError(
                "data_dir",
                str(self.data_dir),
                f"{split} files hold images {images.shape} and labels "
                f"{labels.shape}; expected [N, 28, 28] images and N labels",
            )
        return images, labels

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        (x, y), (x_test, y_test) = self._read("train"), self._read("test")
        rest, val = train_test_split(
            np.arange(len(y)), test_size=self.val_size, random_state=self.split_seed, stratify=y
        )
        if self.max_train_samples is not None and self.max_train_samples < len(rest):
            keep, _ = stratified_pick(
                "max_train_samples", self.max_train_samples, y[rest], self.max_train_samples, self.split_seed
            )
            rest = rest[keep.numpy()]

        def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
            pixels = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float().div_(255.0)
            return pixels, torch.from_numpy(labels.astype(np.int64))

        splits = {"train": tensors(x[rest], y[rest]), "val": tensors(x[val], y[val]), "test": tensors(x_test, y_test)}
        log.info("%s from %s: %s", self.name, self.data_dir, ", ".join(f"{k} {len(v[1]):,}" for k, v in splits.items()))
        return splits


class MNISTDataModule(IDXImageDataModule):
    """Handwritten digits (LeCun et al. 1998): 60,000 train / 10,000 test."""

    name = "MNIST"
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist", "https://yann.lecun.com/exdb/mnist")
    checksums = {
        "train-images-idx3-ubyte.gz": "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }


class FashionMNISTDataModule(IDXImageDataModule):
    """Zalando's article images (Xiao et al. 2017): 10 clothing classes, MNIST's format and sizes."""

    name = "Fashion-MNIST"
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",)
    checksums = {  # md5 as published in the Fashion-MNIST README
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }
    how_to_get = (
        "install it with `apt-get install -y dataset-fashion-mnist` (files in "
        "/usr/share/datasets/fashion-mnist) or set data.download=true"
    )
