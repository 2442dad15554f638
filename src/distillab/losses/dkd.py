"""Decoupled Knowledge Distillation (Zhao et al. 2022, "Decoupled Knowledge Distillation", CVPR).

KD splits into a target-class part and a non-target part. With p = softmax(t/T),
q = softmax(s/T) and y the label:

    b   = [p_y, 1 - p_y]                        (binary: target vs all others)
    p^  = p_c / (1 - p_y)  for c != y           (distribution among non-target classes)
    TCKD = KL(b_teacher || b_student)
    NCKD = KL(p^_teacher || p^_student)
    DKD  = T^2 * (α * TCKD + β * NCKD)

Classic KD equals TCKD + (1 - p_y^teacher) * NCKD: DKD frees the NCKD weight from the
teacher's confidence. Everything is computed in log space, so p_y -> 1 stays finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillab.core.config import check_number
from distillab.core.numerics import soft_log_probs
from distillab.data.batch import Batch
from distillab.losses.kd import kl_rows
from distillab.losses.reduce import masked_mean
from distillab.losses.teacher_targets import TeacherChoice, TeacherOut
from distillab.models.output import ModelOutput


def _split(log_p: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(log p_y, log(1 - p_y), log p^ with the target entry set to 0) for a distribution, each
    clamped to the lowest finite value: a class with probability 0 (a -inf logit) then adds
    exactly 0 to a KL, 0 * finite, never 0 * -inf = nan, on either side (a vocabulary entry both
    models mask) and with no mass off the target at all (log(1 - p_y) = -inf, p^ = 0/0: NCKD's
    weight in KD, 1 - p_y, is 0, and its value is taken as 0)."""
    low = torch.finfo(log_p.dtype).min
    log_target = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    others = log_p.scatter(-1, target.unsqueeze(-1), float("-inf"))
    log_rest = torch.logsumexp(others, dim=-1)
    log_hat = (others - log_rest.clamp_min(low).unsqueeze(-1)).scatter(-1, target.unsqueeze(-1), 0.0)
    return log_target.clamp_min(low), log_rest.clamp_min(low), log_hat.clamp_min(low)


def dkd_parts(
    student_logits: Tensor, teacher_log_probs: Tensor, labels: Tensor, temperature: float, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD), each averaged over positions, without the T^2 and the weights."""
    valid = labels >= 0  # -100 marks ignored positions in language-model labels
    mask = valid if mask is None else mask.bool() & valid
    target = labels.clamp_min(0)
    pt_y, pt_rest, pt_hat = _split(teacher_log_probs, target)
    qs_y, qs_rest, qs_hat = _split(soft_log_probs(student_logits, temperature), target)
    tckd = kl_rows(torch.stack([pt_y, pt_rest], -1), torch.stack([qs_y, qs_rest], -1))
    nckd = kl_rows(pt_hat, qs_hat)  # the target entry is log 1 on both sides: it adds 0
    return masked_mean(tckd, mask), masked_mean(nckd, mask)


class DKD(TeacherChoice):
    """DKD term: T^2 * (α·TCKD + β·NCKD). Defaults are the paper's (α=1, β=8, T=4).

    Add a ``ce`` term beside it in the composite loss, as the paper does.
    """

    reads_labels = True  # the target class splits the distribution: every sample needs its label

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        teacher: int | None = None,
        combine: str = "mean",
        teacher_weights: list[float] | None = None,
    ):
        super().__init__(teacher, combine, teacher_weights)
        self.alpha = check_number("alpha", alpha, low=0)
        self.beta = check_number("beta", beta, low=0)
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        log_p = self.log_probs(teacher_out, self.temperature)
        tckd, nckd = dkd_parts(student_out.logits, log_p, batch["labels"], self.temperature, batch.get("mask"))
        return self.temperature**2 * (self.alpha * tckd + self.beta * nckd)
