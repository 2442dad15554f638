"""Logit losses: cross-entropy and Hinton knowledge distillation.

Logits are [..., classes]: [batch, classes] for classifiers, [batch, seq, vocab] for
language models. Each function reduces over the last axis, then averages over the
positions where ``mask`` is true (all positions when it is None).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from distillab.config import check_number
from distillab.losses.composite import CompositeLoss
from distillab.models.output import ModelOutput


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """CE(s, y) = -log softmax(s)_y, averaged over positions."""
    per_position = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
    return masked_mean(per_position.view(labels.shape), mask)


def soft_target_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).

        KD = T^2 * KL(softmax(t / T) || softmax(s / T))
           = T^2 * sum_c p_c (log p_c - log q_c),   p = softmax(t/T), q = softmax(s/T)

    The T^2 keeps the gradient's scale independent of T, so α keeps its meaning as T changes.
    """
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.to(log_q.dtype) / temperature, dim=-1)
    per_position = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)
    return temperature**2 * masked_mean(per_position, mask)


class CrossEntropy(nn.Module):
    """Supervised term: CE(student, labels)."""

    needs: frozenset[str] = frozenset()

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: dict[str, Any]) -> Tensor:
        return cross_entropy(student_out.logits, batch["labels"], batch.get("mask"))


class SoftTargetKL(nn.Module):
    """Distillation term: T^2 * KL(softmax(t/T) || softmax(s/T)); see :func:`soft_target_kl`."""

    needs: frozenset[str] = frozenset()

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)

    def forward(self, student_out: ModelOutput, teacher_out: ModelOutput, batch: dict[str, Any]) -> Tensor:
        return soft_target_kl(student_out.logits, teacher_out.logits, self.temperature, batch.get("mask"))


class HintonKD(CompositeLoss):
    """Hinton et al. 2015: ``L = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)``.

    Config keys: ``temperature`` (T > 0) and ``alpha`` (0 ≤ α ≤ 1; 1 is pure distillation,
    0 is the student trained on labels alone). Logged parts: ``kd`` and ``ce``.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9):
        alpha = check_number("alpha", alpha, low=0, high=1)
        super().__init__({"kd": SoftTargetKL(temperature), "ce": CrossEntropy()}, {"kd": alpha, "ce": 1 - alpha})
        self.temperature, self.alpha = self.terms["kd"].temperature, alpha
