"""Reductions shared by every loss term."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """At least float32: softmax over a vocabulary in half precision loses the small probabilities."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)
