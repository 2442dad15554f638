"""In-memory tensor data: one shared DataModule that every small data set builds on.

Batches are dicts ``{"inputs": Tensor | dict[str, Tensor], "labels": LongTensor,
"index": LongTensor}`` and the split's extras (data/batch.py lists every key). ``index`` is
the sample's position in its split, stable across epochs, shuffling and DDP sharding, which
is what a teacher-output cache is keyed by.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from distillab.core.config import check_int, check_number
from distillab.data.batch import Batch, Inputs
from distillab.data.length_grouped import LengthGroupedSampler
from distillab.data.split import stratified_pick


def take_inputs(inputs: Inputs, idx: Tensor) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v[idx] for k, v in inputs.items()}
    return inputs[idx]


def trim_padding(inputs: Inputs) -> Inputs:
    """Token inputs cut to the batch's longest sequence (dynamic padding).

    Text is stored padded to ``max_length``; most sentences are far shorter, and attention
    and FFN cost grow with the padded length. Positions past the longest ``attention_mask``
    are padding for every sample in the batch, so cutting them changes no real token's output.
    """
    if not isinstance(inputs, dict) or "attention_mask" not in inputs:
        return inputs
    length = int(inputs["attention_mask"].sum(1).max())
    return {k: v[:, :length] if v.dim() > 1 else v for k, v in inputs.items()}


def _as_batch(batch: Batch) -> Batch:
    """Collate function for datasets that already return whole batches."""
    return batch


class IndexedTensorDataset(Dataset):
    """Tensors held in memory and served a whole batch at a time.

    DataLoader calls ``__getitems__`` with the batch's indices, so a batch is one tensor
    index operation instead of ``batch_size`` Python calls and a collate.
    """

    def __init__(
        self, inputs: Inputs, labels: Tensor, extras: dict[str, Tensor] | None = None, dynamic_padding: bool = False
    ):
        n = len(labels)
        self.dynamic_padding = dynamic_padding
        self.extras = dict(extras or {})  # per-sample tensors carried into the batch, e.g. "domain"
        sizes = [len(v) for v in inputs.values()] if isinstance(inputs, dict) else [len(inputs)]
        sizes += [len(v) for v in self.extras.values()]
        if any(s != n for s in sizes):
            raise ValueError(f"inputs of length {sizes} do not match {n} labels")
        self.inputs, self.labels = inputs, labels.long()

    def subset(self, keep: Tensor) -> IndexedTensorDataset:
        """The samples where the boolean ``keep`` is true (indices renumbered from 0)."""
        idx = keep.nonzero().squeeze(1)
        return IndexedTensorDataset(
            take_inputs(self.inputs, idx),
            self.labels[idx],
            {k: v[idx] for k, v in self.extras.items()},
            self.dynamic_padding,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> Batch:
        return self.batch(torch.as_tensor(indices, dtype=torch.long))

    def batch(self, idx: Tensor, full_length: bool = False) -> Batch:
        """The samples at positions ``idx`` as one batch dict; token inputs cut to the longest
        sequence in it unless ``full_length`` (the teacher cache stores every position)."""
        inputs, labels = take_inputs(self.inputs, idx), self.labels[idx]
        if self.dynamic_padding and not full_length:
            inputs = trim_padding(inputs)
            if labels.dim() > 1 and isinstance(inputs, dict) and "attention_mask" in inputs:
                labels = labels[:, : inputs["attention_mask"].shape[1]]  # a label per token: cut with the inputs
        batch: Batch = {"inputs": inputs, "labels": labels, "index": idx}
        batch.update({k: v[idx] for k, v in self.extras.items()})
        return batch

    def __getitem__(self, i: int) -> dict[str, Any]:
        # Single-sample access (e.g. for inspection); the loaders use __getitems__.
        batch = self.__getitems__([i])
        return {k: (take_inputs(v, 0) if k == "inputs" else v[0]) for k, v in batch.items()}


class TensorDataModule(L.LightningDataModule):
    """Shared loaders for data sets that fit in memory.

    Subclasses implement :meth:`load_splits` returning ``{"train", "val", "test"}`` of
    ``(inputs, labels)``; everything else (loaders, validation of the loader knobs) is here.
    """

    # Or "token_classification": labels [B, L], a word's tag at its first sub-token (-100 elsewhere);
    # or "language_model": labels [B, L], the next token at each position.
    task: str = "classification"
    num_classes: int
    num_domains: int = 1  # > 1 when batches carry a "domain" id (cross-domain distillation)
    # Text: cut each batch to its longest sequence (see trim_padding).
    dynamic_padding: bool = False
    # Random transform of training inputs (on device, after transfer); None: inputs are the
    # same every epoch, so a teacher's outputs on them can be cached.
    augmentation: Callable[[Inputs], Inputs] | None = None
    # Few labels (Hinton's transfer set): the student's CE sees the labels of this fraction of
    # the training samples, drawn per class with label_seed; distillation terms see every sample.
    labelled_fraction: float = 1.0
    label_seed: int = 0
    has_label: Tensor | None = None  # training rows with a label (None: all)

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0):
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.splits: dict[str, IndexedTensorDataset] = {}

    def keep_labels(self, labelled_fraction: float = 1.0, label_seed: int = 0) -> None:
        """Keep the labels of ``labelled_fraction`` (0 < f <= 1) of the training samples for
        the student (``labelled`` in its batches); subclasses call it from ``__init__``."""
        self.labelled_fraction = check_number("labelled_fraction", labelled_fraction, low=0, high=1, low_open=True)
        self.label_seed = check_int("label_seed", label_seed, low=0)

    @property
    def model_kwargs(self) -> dict[str, int]:
        """What a model factory must know about this data (``num_labels``, image or vocab size)."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple]:
        """``{"train", "val", "test"}`` of ``(inputs, labels)`` or ``(inputs, labels, extras)``."""
        raise NotImplementedError

    def fingerprint(self) -> str | None:
        """What a stored teacher depends on beyond the data config (e.g. a trained tokenizer)."""
        return None

    def augmented(self, augmentation: Callable[[Inputs], Inputs]) -> TensorDataModule:
        """A copy whose training batches go through ``augmentation`` (e.g. only the teacher's)."""
        view = copy.copy(self)
        view.augmentation = augmentation
        return view

    def restricted_to_domain(self, domain: int) -> TensorDataModule:
        """A copy whose splits hold only the samples of ``domain`` (a per-domain teacher's data)."""
        self.setup()
        view = copy.copy(self)
        view.splits = {k: ds.subset(ds.extras["domain"] == domain) for k, ds in self.splits.items()}
        return view

    def inputs_vary(self, split: str) -> bool:
        """Whether ``split``'s inputs change from epoch to epoch (random augmentation)."""
        return split == "train" and self.augmentation is not None

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        trainer = self.trainer  # None outside a Trainer (LightningDataModule sets it)
        if self.augmentation is not None and trainer is not None and trainer.training:
            batch = {**batch, "inputs": self.augmentation(batch["inputs"])}
        return batch

    def labelled_mask(self, labels: Tensor, has_label: Tensor | None) -> Tensor | None:
        """Which training samples the student may learn the label of: a stratified
        ``labelled_fraction`` of those that have one (``has_label``; None: all do)."""
        if self.labelled_fraction == 1 and has_label is None:
            return None
        rows = has_label.nonzero().squeeze(1) if has_label is not None else torch.arange(len(labels))
        keep = torch.zeros(len(labels), dtype=torch.bool)
        if self.labelled_fraction == 1:
            keep[rows] = True
        else:
            picked, _ = stratified_pick(
                "labelled_fraction", self.labelled_fraction, labels[rows], self.labelled_fraction, self.label_seed
            )
            keep[rows[picked]] = True
        return keep

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            splits = {
                k: IndexedTensorDataset(*v, dynamic_padding=self.dynamic_padding) for k, v in self.load_splits().items()
            }
            train = splits["train"]
            # Rows with no label at all (data.unlabelled) are marked by the loader as has_label.
            has_label = train.extras.pop("has_label", None)
            self.has_label = has_label
            labelled = self.labelled_mask(train.labels, has_label)
            if labelled is not None:
                train.extras["labelled"] = labelled
            self.splits = splits

    def replaced(self, split: str, dataset: IndexedTensorDataset) -> TensorDataModule:
        """A copy whose ``split`` is ``dataset`` (e.g. a teacher's generated training sequences)."""
        self.setup()
        view = copy.copy(self)
        view.splits = {**self.splits, split: dataset}
        return view

    def for_teacher(self) -> TensorDataModule:
        """The data a teacher trains on: every label, and no rows without one (a teacher is
        trained on full data; only the student learns from few labels)."""
        self.setup()
        train = self.splits["train"]
        if "labelled" not in train.extras:
            return self
        view = copy.copy(self)
        keep = self.has_label if self.has_label is not None else torch.ones(len(train), dtype=torch.bool)
        full = train.subset(keep)
        full.extras.pop("labelled")
        view.splits = {**self.splits, "train": full}
        return view

    def eval_loader(self, split: str) -> DataLoader:
        """The whole split in order, even under DDP (for measurements outside Lightning's loops,
        which would otherwise see this rank's shard only)."""
        return self._loader(split, shuffle=False, shard=False)

    def _loader(self, split: str, shuffle: bool, shard: bool = True) -> DataLoader:
        self.setup()
        dataset, sampler = self.splits[split], None
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        if shuffle and dataset.dynamic_padding and isinstance(dataset.inputs, dict):
            sampler = LengthGroupedSampler(dataset.inputs["attention_mask"].sum(1), batch_size)
        elif not shuffle and shard and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under DDP each rank evaluates its own shard, none padded with repeats (Lightning's
            # default sampler pads, so the gathered metrics would count some samples twice).
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
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
