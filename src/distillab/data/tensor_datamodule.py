"""In-memory tensor data: one shared DataModule that every small data set builds on.

Batches are dicts ``{"inputs": Tensor | dict[str, Tensor], "labels": LongTensor,
"index": LongTensor}``. ``index`` is the sample's position in its split, stable across
epochs, shuffling and DDP sharding, which is what a teacher-output cache is keyed by.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from distillab.config import check_int

Inputs = Tensor | dict[str, Tensor]


def _take(inputs: Inputs, idx: Tensor) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v[idx] for k, v in inputs.items()}
    return inputs[idx]


def _as_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Collate function for datasets that already return whole batches."""
    return batch


class IndexedTensorDataset(Dataset):
    """Tensors held in memory and served a whole batch at a time.

    DataLoader calls ``__getitems__`` with the batch's indices, so a batch is one tensor
    index operation instead of ``batch_size`` Python calls and a collate.
    """

    def __init__(self, inputs: Inputs, labels: Tensor):
        n = len(labels)
        sizes = [len(v) for v in inputs.values()] if isinstance(inputs, dict) else [len(inputs)]
        if any(s != n for s in sizes):
            raise ValueError(f"inputs of length {sizes} do not match {n} labels")
        self.inputs, self.labels = inputs, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"inputs": _take(self.inputs, idx), "labels": self.labels[idx], "index": idx}

    def __getitem__(self, i: int) -> dict[str, Any]:
        # Single-sample access (e.g. for inspection); the loaders use __getitems__.
        batch = self.__getitems__([i])
        return {k: (_take(v, 0) if k == "inputs" else v[0]) for k, v in batch.items()}


class TensorDataModule(L.LightningDataModule):
    """Shared loaders for data sets that fit in memory.

    Subclasses implement :meth:`load_splits` returning ``{"train", "val", "test"}`` of
    ``(inputs, labels)``; everything else (loaders, validation of the loader knobs) is here.
    """

    num_classes: int

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0):
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.splits: dict[str, IndexedTensorDataset] = {}

    @property
    def model_kwargs(self) -> dict[str, int]:
        """What a model factory must know about this data (``num_labels``, image or vocab size)."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple[Inputs, Tensor]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {k: IndexedTensorDataset(*v) for k, v in self.load_splits().items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_as_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
