"""Numerics shared by models and losses."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """At least float32: softmax over a vocabulary in half precision loses the small probabilities."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
