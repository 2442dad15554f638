"""Soft targets from one or several teachers.

With several teachers a logit term either reads one of them (``teacher: <index>``, one term
per teacher) or their combined distribution (``teacher: null``):

    p(x) = sum_i w_i(x) softmax(t_i(x) / T)

``combine=mean``: w_i = 1/n. ``combine=weighted``: fixed ``teacher_weights`` (normalised).
``combine=confidence``: w_i(x) = softmax_i(-H(softmax(t_i(x)/T))), so a teacher that is
more certain about this sample (lower entropy) weighs more (cf. Zhang et al. 2022,
"Confidence-Aware Multi-Teacher Knowledge Distillation").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.core.numerics import soft_log_probs
from distillab.losses.term import LossTerm
from distillab.models.output import EncoderShape, ModelOutput

COMBINE = ("mean", "weighted", "confidence")
TeacherOut = ModelOutput | Sequence[ModelOutput]


class TeacherChoice(LossTerm):
    """A term that reads the teachers' logits: which teacher(s), validated at construction."""

    def __init__(self, teacher: int | None = None, combine: str = "mean", teacher_weights: list[float] | None = None):
        super().__init__()
        self.teacher = None if teacher is None else check_int("teacher", teacher, low=0)
        self.combine = check_choice("combine", combine, COMBINE)
        if combine == "weighted":
            if not teacher_weights:
                raise ConfigError("teacher_weights", teacher_weights, "combine=weighted needs a list of weights")
            weights = [check_number(f"teacher_weights[{i}]", w, low=0) for i, w in enumerate(teacher_weights)]
            if sum(weights) <= 0:
                raise ConfigError("teacher_weights", teacher_weights, "must not all be 0")
            self.teacher_weights = [w / sum(weights) for w in weights]
        else:
            self.teacher_weights = None
        self.given_weights = None if teacher_weights is None else list(teacher_weights)

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        """Check ``teacher`` and ``teacher_weights`` against the run's teachers, before training."""
        self.check_count(len(teachers))

    def check_count(self, n: int) -> None:
        if self.teacher is not None and self.teacher >= n:
            raise ConfigError("teacher", self.teacher, f"must be < the number of teachers ({n})")
        if self.teacher is None and self.teacher_weights is not None and len(self.teacher_weights) != n:
            raise ConfigError("teacher_weights", self.given_weights, f"needs one weight per teacher ({n})")

    def pick(self, teacher_out: TeacherOut) -> list[ModelOutput]:
        outs = [teacher_out] if isinstance(teacher_out, ModelOutput) else list(teacher_out)
        self.check_count(len(outs))
        return [outs[self.teacher]] if self.teacher is not None else outs

    def log_probs(self, teacher_out: TeacherOut, temperature: float) -> Tensor:
        """log p of the (combined) teacher distribution at ``temperature``, shape [..., classes]."""
        outs = self.pick(teacher_out)
        if len(outs) == 1:
            return soft_log_probs(outs[0].logits, temperature)
        log_ps = torch.stack([soft_log_probs(o.logits, temperature) for o in outs])
        if self.combine == "confidence":
            entropy = -torch.special.xlogy(log_ps.exp(), log_ps.exp()).sum(-1)  # [teachers, ...]; 0 log 0 = 0
            log_w = F.log_softmax(-entropy, dim=0).unsqueeze(-1)
        elif self.combine == "weighted":
            weights = torch.tensor(self.teacher_weights, dtype=log_ps.dtype, device=log_ps.device)
            log_w = weights.log().view(-1, *[1] * (log_ps.dim() - 1))
        else:
            log_w = torch.full(
                (len(outs),) + (1,) * (log_ps.dim() - 1), -math.log(len(outs)), dtype=log_ps.dtype, device=log_ps.device
            )
        return torch.logsumexp(log_w + log_ps, dim=0)

    def logits(self, teacher_out: TeacherOut) -> Tensor:
        """Teacher logits for terms that compare logits directly (the weighted mean of logits)."""
        outs = self.pick(teacher_out)
        if len(outs) == 1:
            return outs[0].logits
        weights = self.teacher_weights or [1 / len(outs)] * len(outs)
        return sum(w * o.logits for w, o in zip(weights, outs))
