"""What every in-memory image data set shares: the keys it gives a model factory and the
random-shift augmentation of its training images."""

from __future__ import annotations

from functools import partial

from distillab.core.config import check_int
from distillab.data.abilities import ImageData
from distillab.data.images.augment import random_shift as _shift
from distillab.data.tensor_datamodule import TensorDataModule


class ImageDataModule(TensorDataModule, ImageData):
    """Square images [N, num_channels, image_size, image_size] held in memory."""

    max_random_shift: int  # the largest ``random_shift`` (pixels) a config may ask for

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        random_shift: int,
        labelled_fraction: float,
        label_seed: int,
    ):
        """The loaders' knobs, few labels (:meth:`keep_labels`) and ``random_shift``: training
        images translated by up to that many pixels (0: never), anew every epoch."""
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.keep_labels(labelled_fraction, label_seed)
        self.random_shift = check_int("random_shift", random_shift, low=0, high=self.max_random_shift)
        if self.random_shift:
            self.augmentation = partial(_shift, max_shift=self.random_shift)

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"num_labels": self.num_classes, "image_size": self.image_size, "num_channels": self.num_channels}
