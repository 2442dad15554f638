"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download).

Images are scaled from 0..16 to [0, 1] and shaped [N, 1, 8, 8] for a ViT. ``random_shift``
> 0 translates training images by up to that many pixels, anew every epoch. The
train/val/test split is stratified and fixed by ``split_seed``, independent of the run's
training seed, so every run and every teacher sees the same test set.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from distillab.core.config import ConfigError, check_int, check_number
from distillab.data.images.image_datamodule import ImageDataModule


class DigitsDataModule(ImageDataModule):
    num_classes = 10
    image_size = 8
    num_channels = 1
    max_random_shift = image_size // 2

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        random_shift: int = 0,
        labelled_fraction: float = 1.0,
        label_seed: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, random_shift, labelled_fraction, label_seed)
        self.val_fraction = check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
        self.test_fraction = check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError("val_fraction", val_fraction, "val_fraction + test_fraction must be < 0.9")
        self.split_seed = check_int("split_seed", split_seed, low=0)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
        y = torch.tensor(digits.target, dtype=torch.long)
        idx = torch.arange(len(y)).numpy()
        rest, test = train_test_split(
            idx, test_size=self.test_fraction, random_state=self.split_seed, stratify=y.numpy()
        )
        train, val = train_test_split(
            rest,
            test_size=self.val_fraction / (1 - self.test_fraction),
            random_state=self.split_seed,
            stratify=y.numpy()[rest],
        )
        return {name: (x[i], y[i]) for name, i in (("train", train), ("val", val), ("test", test))}
