"""Reductions shared by every loss term."""

from __future__ import annotations

from torch import Tensor

from distillab.core.numerics import upcast  # noqa: F401  (re-exported: every loss reads it from here)
from distillab.data.batch import Batch


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def label_mask(batch: Batch) -> Tensor | None:
    """Where a supervised term may read ``labels``: the batch's position ``mask`` (padding
    of a language model) and, with few labels, its ``labelled`` samples ([batch])."""
    mask, labelled = batch.get("mask"), batch.get("labelled")
    if labelled is None:
        return mask
    if mask is None:
        return labelled
    return mask & labelled.view(-1, *[1] * (mask.dim() - 1))
