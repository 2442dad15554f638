"""Deep Mutual Learning (Zhang et al. 2018, "Deep Mutual Learning", CVPR).

K models learn together from scratch. Model k minimises

    L_k = CE(z_k, y) + w * T^2 * (1 / (K - 1)) * sum_{j != k} KL(softmax(z_j / T) || softmax(z_k / T))

with the peers' predictions z_j detached, so each L_k moves only model k. The sum over k
therefore gives every model exactly its own gradient, and one optimizer over all models
updates them all at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distillab.core.config import check_number
from distillab.data.batch import Batch
from distillab.losses.composite import LossResult
from distillab.losses.kd import cross_entropy, soft_target_kl
from distillab.losses.reduce import label_mask


def mutual_kl(logits: list[Tensor], k: int, temperature: float, mask: Tensor | None = None) -> Tensor:
    """Mean over peers j != k of T^2 KL(softmax(z_j/T) || softmax(z_k/T)), peers detached."""
    peers = [z.detach() for j, z in enumerate(logits) if j != k]
    return torch.stack([soft_target_kl(logits[k], z, temperature, mask) for z in peers]).mean()


class MutualLoss(nn.Module):
    """Sum over models of CE + ``kl_weight`` * mutual KL; parts ``ce/<k>`` and ``kl/<k>``."""

    def __init__(self, temperature: float = 1.0, kl_weight: float = 1.0):
        super().__init__()
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.kl_weight = check_number("kl_weight", kl_weight, low=0)

    def forward(self, logits: list[Tensor], batch: Batch) -> LossResult:
        mask, labelled = batch.get("mask"), label_mask(batch)
        parts: dict[str, Tensor] = {}
        for k, z in enumerate(logits):
            parts[f"ce/{k}"] = cross_entropy(z, batch["labels"], labelled)
            parts[f"kl/{k}"] = mutual_kl(logits, k, self.temperature, mask)
        total = sum(parts[f"ce/{k}"] + self.kl_weight * parts[f"kl/{k}"] for k in range(len(logits)))
        return LossResult(total, parts)
