"""Numerics shared by models and losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """At least float32: softmax over a vocabulary in half precision loses the small probabilities."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def soft_log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(z / T) over the last axis, in float32 at least: a temperature-softened
    distribution (Hinton et al. 2015), as every soft-target term and teacher cache reads it."""
    return F.log_softmax(upcast(logits) / temperature, dim=-1)
