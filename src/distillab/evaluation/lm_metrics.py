"""Language-model metrics: held-out perplexity and next-token top-1 accuracy (torchmetrics,
so they sync under DDP like the classification metrics)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

IGNORE = -100  # a label position that no metric reads (padding, a prompt)


def masked_labels(labels: Tensor, mask: Tensor | None) -> Tensor:
    return labels if mask is None else labels.masked_fill(~mask.to(torch.bool), IGNORE)


class _OverLabelledPositions(Metric):
    """A per-position quantity summed over every labelled position of the split, with their
    count: both are accumulated (and summed across DDP ranks), so the mean is the split's,
    not a mean of batch means."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def summed(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The quantity summed over these positions (logits [N, V], labels [N])."""
        raise NotImplementedError

    def update(self, logits: Tensor, labels: Tensor) -> None:
        keep = labels != IGNORE
        self.total += self.summed(logits[keep], labels[keep]).double()
        self.count += keep.sum()

    def mean(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class Perplexity(_OverLabelledPositions):
    """exp(mean next-token negative log-likelihood) over every labelled position of the split:
    PPL = exp(-1/N sum_i log q(y_i | y_<i))."""

    higher_is_better = False

    def summed(self, logits: Tensor, labels: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")

    def compute(self) -> Tensor:
        return torch.exp(self.mean()).float()


class NextTokenAccuracy(_OverLabelledPositions):
    """Share of labelled positions whose most likely next token is the label."""

    higher_is_better = True

    def summed(self, logits: Tensor, labels: Tensor) -> Tensor:
        return (logits.argmax(-1) == labels).sum()

    def compute(self) -> Tensor:
        return self.mean().float()


def language_model_metrics(prefix: str) -> MetricCollection:
    """``ppl`` and ``acc`` (next-token top-1), logged as ``<prefix><name>``."""
    return MetricCollection({"ppl": Perplexity(), "acc": NextTokenAccuracy()}, prefix=prefix)
