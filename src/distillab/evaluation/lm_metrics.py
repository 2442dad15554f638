"""Language-model metrics: held-out perplexity and next-token top-1 accuracy (torchmetrics,
so they sync under DDP like the classification metrics)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

IGNORE = -100  # a label position that no metric reads (padding, a prompt)


def masked_labels(labels: Tensor, mask: Tensor | None) -> Tensor:
    return labels if mask is None else labels.masked_fill(~mask.to(torch.bool), IGNORE)


class Perplexity(Metric):
    """exp(mean next-token negative log-likelihood) over every labelled position of the split:
    PPL = exp(-1/N sum_i log q(y_i | y_<i)). The sum and the count are accumulated, so the
    value is the split's, not a mean of batch perplexities."""

    higher_is_better = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        keep = labels != IGNORE
        nll = torch.nn.functional.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")
        self.nll += nll.double()
        self.count += keep.sum()

    def compute(self) -> Tensor:
        return torch.exp(self.nll / self.count.clamp_min(1)).float()


class NextTokenAccuracy(Metric):
    """Share of labelled positions whose most likely next token is the label."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        keep = labels != IGNORE
        self.correct += (logits.argmax(-1)[keep] == labels[keep]).sum()
        self.count += keep.sum()

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp_min(1)


def language_model_metrics(prefix: str) -> MetricCollection:
    """``ppl`` and ``acc`` (next-token top-1), logged as ``<prefix><name>``."""
    return MetricCollection({"ppl": Perplexity(), "acc": NextTokenAccuracy()}, prefix=prefix)
