"""A random order in which each batch holds sequences of similar length (for dynamic padding).

With random batches every batch is padded to its longest sentence: on SST-2 (median 10
tokens) a random batch of 64 is cut at ~48 tokens, so most of the compute is padding.
Shuffling, then sorting by length inside chunks of ``50 * batch_size`` and shuffling the
resulting batches keeps the order random at the batch level while padding little (the same
idea as HF Trainer's ``group_by_length``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler


def length_grouped_order(
    lengths: Tensor, batch_size: int, generator: torch.Generator, chunk_batches: int = 50
) -> Tensor:
    """A permutation of ``range(len(lengths))``; consecutive runs of ``batch_size`` are the batches."""
    order = torch.randperm(len(lengths), generator=generator)
    chunk = batch_size * chunk_batches
    parts = []
    for start in range(0, len(order), chunk):  # a loop over chunks, not samples
        idx = order[start : start + chunk]
        parts.append(idx[torch.argsort(lengths[idx], descending=True, stable=True)])
    grouped = torch.cat(parts)
    batches = list(torch.split(grouped, batch_size))
    full = batches[:-1] if len(batches[-1]) < batch_size else batches
    tail = batches[len(full) :]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return torch.cat(shuffled + tail) if shuffled or tail else grouped


class LengthGroupedSampler(Sampler[int]):
    """Yields sample indices in :func:`length_grouped_order`, a new order every epoch.

    Each epoch's generator is seeded from torch's global RNG, so ``seed_everything`` makes the
    order reproducible, as it does for DataLoader's own shuffling.
    """

    def __init__(self, lengths: Tensor, batch_size: int):
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed)
        return iter(length_grouped_order(self.lengths, self.batch_size, generator).tolist())
