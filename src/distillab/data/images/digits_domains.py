"""Two real domains from the bundled digits, for cross-domain distillation.

Each image belongs to one domain, drawn once with ``domain_seed``: domain 0 keeps the
original image, domain 1 shows it rotated by 90 degrees (a fixed geometric transform:
same digits, different appearance). Batches carry ``"domain"``. The train/val/test split
is the one of :class:`DigitsDataModule`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillab.core.config import check_int
from distillab.data.images.digits import DigitsDataModule


class DigitsDomainsDataModule(DigitsDataModule):
    num_domains = 2

    def __init__(self, domain_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.domain_seed = check_int("domain_seed", domain_seed, low=0)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor, dict[str, Tensor]]]:
        generator = torch.Generator().manual_seed(self.domain_seed)
        splits = {}
        for name, (x, y) in super().load_splits().items():
            domain = torch.randint(0, 2, (len(y),), generator=generator)
            rotated = torch.rot90(x, k=1, dims=(-2, -1))
            x = torch.where(domain.view(-1, 1, 1, 1).bool(), rotated, x)
            splits[name] = (x, y, {"domain": domain})
        return splits
