"""Logit losses: cross-entropy, Hinton KD, soft-target cross-entropy, logit MSE.

Logits are [..., classes]: [batch, classes] for classifiers, [batch, seq, vocab] for
language models. Each function reduces over the last axis, then averages over the
positions where ``mask`` is true (all positions when it is None).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distillab.core.config import check_number
from distillab.core.numerics import soft_log_probs
from distillab.data.batch import Batch
from distillab.losses.composite import CompositeLoss
from distillab.losses.reduce import label_mask, masked_mean, upcast
from distillab.losses.teacher_targets import TeacherChoice, TeacherOut
from distillab.losses.term import LossTerm
from distillab.models.output import EncoderShape, ModelOutput

IGNORE_INDEX = -100  # a label that no term reads (padding, a prompt): F.cross_entropy's ignore_index


def counted(labels: Tensor | None, mask: Tensor | None) -> Tensor | None:
    """The positions a per-position mean counts: those ``mask`` keeps (all when None) whose label
    is not IGNORE_INDEX; None when that is every position. One rule for every term that reads
    labels: an ignored position is in neither the sum nor the count."""
    if labels is None or labels.is_floating_point():
        return mask
    ignored = labels == IGNORE_INDEX
    if mask is None:
        return ~ignored if bool(ignored.any()) else None  # None keeps the unmasked fast paths
    mask = mask.to(torch.bool)  # a [B] mask (labelled samples) over [B, L] labels: every position of a sample
    return mask.view(*mask.shape, *[1] * (labels.dim() - mask.dim())) & ~ignored


def cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """CE(s, y) = -log softmax(s)_y, averaged over the positions ``mask`` keeps whose label is
    not IGNORE_INDEX (0 when there is none)."""
    if mask is None:  # one fused op: this runs every step
        total = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="sum")
        return total / (labels != IGNORE_INDEX).sum().clamp_min(1)
    per_position = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
    return masked_mean(per_position.view(labels.shape), counted(labels, mask))


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) over the last axis, from log p and log q."""
    # 0 * log 0 = 0: a class the target rules out (log p = -inf, e.g. a masked vocabulary
    # entry) must contribute nothing, not 0 * -inf = nan. Clamped to the lowest finite value,
    # exp gives exactly 0 and the product is 0, in one op instead of a comparison and a select.
    # The same for log q where both rule a class out (-inf - -inf would be nan).
    log_p = log_p.clamp_min(torch.finfo(log_p.dtype).min)
    log_q = log_q.clamp_min(torch.finfo(log_q.dtype).min)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def kl_to_target(
    student_logits: Tensor, teacher_log_probs: Tensor, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """T^2 * KL(p || softmax(s/T)) for a target distribution given as log p."""
    log_q = soft_log_probs(student_logits, temperature)
    return temperature**2 * masked_mean(kl_rows(teacher_log_probs, log_q), mask)


def soft_target_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).

        KD = T^2 * KL(softmax(t / T) || softmax(s / T))
           = T^2 * sum_c p_c (log p_c - log q_c),   p = softmax(t/T), q = softmax(s/T)

    The T^2 keeps the gradient's scale independent of T, so α keeps its meaning as T changes.
    """
    return kl_to_target(student_logits, soft_log_probs(teacher_logits, temperature), temperature, mask)


def soft_target_ce(
    student_logits: Tensor, teacher_log_probs: Tensor, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """Soft-target cross-entropy (Hinton et al. 2015; the prediction loss of TinyBERT and DistilBERT):

        L = -T^2 * sum_c p_c log softmax(s/T)_c

    It differs from the KL by the teacher's entropy, a constant for the student: same
    gradient, but its value does not reach 0 when the student matches.
    """
    log_q = soft_log_probs(student_logits, temperature)
    p = teacher_log_probs.exp()
    return temperature**2 * masked_mean(-torch.where(p > 0, p * log_q, 0.0).sum(-1), mask)


def logit_mse(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Logit matching (Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?"):

    L = mean_c (s_c - t_c)^2
    """
    return masked_mean((upcast(student_logits) - upcast(teacher_logits)).pow(2).mean(-1), mask)


def positions(student_out: ModelOutput, batch: Batch) -> Tensor | None:
    """Where a distillation term on logits averages: the batch's ``mask``, less, when there is a
    label per position (token classification, language models), the positions labelled
    IGNORE_INDEX (a word's later sub-tokens, special tokens, padding), which are in neither the
    sum nor the count. One label per sample (a [B] label for [B, C] logits) changes nothing: a
    distillation term reads every sample, those without a label too."""
    labels, mask = batch.get("labels"), batch.get("mask")
    if labels is None or labels.dim() < 2 or labels.shape != student_out.logits.shape[:-1]:
        return mask
    return counted(labels, mask)


class CrossEntropy(LossTerm):
    """Supervised term: CE(student, labels), averaged over the samples that have a label (all,
    unless the data keep only a fraction: ``data.labelled_fraction``); 0 when none has."""

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: Batch) -> Tensor:
        return cross_entropy(student_out.logits, batch["labels"], label_mask(batch))


class SoftTargetKL(TeacherChoice):
    """Distillation term: T^2 * KL(p_teacher || softmax(s/T)); see :func:`soft_target_kl`.

    With several teachers, p is their combined distribution (see teacher_targets.py). With a
    label per position (token classification), the KD of each token, averaged over the tokens
    that carry a label (:func:`positions`).
    """

    def __init__(
        self,
        temperature: float = 4.0,
        teacher: int | None = None,
        combine: str = "mean",
        teacher_weights: list[float] | None = None,
    ):
        super().__init__(teacher, combine, teacher_weights)
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        log_p = self.log_probs(teacher_out, self.temperature)
        return kl_to_target(student_out.logits, log_p, self.temperature, positions(student_out, batch))


class SoftTargetCE(SoftTargetKL):
    """Soft-target cross-entropy term; see :func:`soft_target_ce`."""

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        log_p = self.log_probs(teacher_out, self.temperature)
        return soft_target_ce(student_out.logits, log_p, self.temperature, positions(student_out, batch))


class LogitMSE(TeacherChoice):
    """Logit matching term; see :func:`logit_mse`."""

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        return logit_mse(student_out.logits, self.logits(teacher_out), positions(student_out, batch))


class HintonKD(CompositeLoss):
    """Hinton et al. 2015: ``L = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)``.

    Config keys: ``temperature`` (T > 0) and ``alpha`` (0 ≤ α ≤ 1; 1 is pure distillation,
    0 is the student trained on labels alone). With several teachers, ``combine`` (mean,
    weighted, confidence) and ``teacher_weights`` say how their soft targets are combined.
    Logged parts: ``kd`` and ``ce``.
    """

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 0.9,
        combine: str = "mean",
        teacher_weights: list[float] | None = None,
    ):
        alpha = check_number("alpha", alpha, low=0, high=1)
        kd = SoftTargetKL(temperature, None, combine, teacher_weights)
        super().__init__({"kd": kd, "ce": CrossEntropy()}, {"kd": alpha, "ce": 1 - alpha})
        self.temperature, self.alpha = kd.temperature, alpha

    def setup(self, student: EncoderShape, teachers: list[EncoderShape]) -> None:
        self.terms["kd"].setup(student, teachers)  # its keys (combine, teacher_weights) are this loss's
