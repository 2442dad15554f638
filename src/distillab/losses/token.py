"""The token-level distillation term (a divergence between the teacher's and the student's
next-token distributions, plus an optional next-token CE), and what a loss's token terms
say about the teacher cache they read (a top-k cache is built at their temperature).

The divergences themselves are in token_divergences.py (re-exported here, where they were
first imported from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.data.batch import Batch
from distillab.losses.composite import CompositeLoss
from distillab.losses.kd import counted, cross_entropy
from distillab.losses.reduce import label_mask
from distillab.losses.term import LossTerm
from distillab.losses.token_divergences import *  # noqa: F403  (re-exported: they were first imported from here)
from distillab.losses.token_divergences import divergence_and_ce, token_divergence
from distillab.losses.token_rows import KINDS
from distillab.losses.topk import TopK
from distillab.models.output import ModelOutput


class TokenDivergence(LossTerm):
    """Distillation term: one token-level divergence between the teacher's and the student's
    next-token distributions, averaged over the batch's ``mask`` less the positions whose label
    is -100 (kd.IGNORE_INDEX: in neither the sum nor the count, with a mask or without, as for
    the CE); see :func:`token_divergence`.

    Config keys: ``kind`` (forward_kl, reverse_kl, jsd, tv, skew_kl, skew_reverse_kl),
    ``temperature`` (T > 0), ``beta`` (jsd's β, 0 < β < 1), ``alpha`` (the skew kinds' α,
    0 <= α < 1), ``chunk`` (positions per chunk, >= 1), ``ce_weight`` (w: the term is
    D + w · CE(next token), the CE over the positions the batch lets a label be read; with a
    top-k teacher at T = 1 both come from one softmax over the vocabulary, which is most of
    a small student's step, so KD then costs little more than training alone). β in {0, 1}
    with jsd and α = 1 with a skew kind are refused: the divergence is then 0 for every
    student, a run that learns nothing from the teacher.

    ``teacher_out`` is a ModelOutput (dense logits) or a :class:`TopK` already at this
    temperature (``topk_of(logits, k, temperature)``), or a one-element list of either.
    """

    def __init__(
        self,
        kind: str = "forward_kl",
        temperature: float = 1.0,
        beta: float = 0.5,
        alpha: float = 0.1,
        chunk: int = 1024,
        ce_weight: float = 0.0,
    ):
        super().__init__()
        self.kind = check_choice("kind", kind, KINDS)
        self.ce_weight = check_number("ce_weight", ce_weight, low=0)
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.beta = check_number("beta", beta, low=0, high=1)
        if kind == "jsd" and self.beta in (0.0, 1.0):
            raise ConfigError(
                "beta",
                beta,
                "must be > 0 and < 1 with kind=jsd (at 0 and 1 the divergence is 0 for "
                "every student; for its limits use kind=forward_kl or reverse_kl)",
            )
        self.alpha = check_number("alpha", alpha, low=0, high=1)
        if kind in ("skew_kl", "skew_reverse_kl") and self.alpha == 1.0:
            raise ConfigError(
                "alpha", alpha, f"must be < 1 with kind={kind} (at 1 the divergence is 0 for every student)"
            )
        self.chunk = check_int("chunk", chunk, low=1)

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: Batch) -> Tensor:
        teacher = _one_teacher(teacher_out)
        logits, mask = student_out.logits, batch.get("mask")
        if self.ce_weight and isinstance(teacher, TopK) and self.temperature == 1:
            divergence, ce = divergence_and_ce(
                self.kind, logits, teacher, batch["labels"], mask, label_mask(batch), beta=self.beta, alpha=self.alpha
            )
            return divergence + self.ce_weight * ce
        labels = batch.get("labels")
        if labels is not None and labels.shape == logits.shape[:-1]:  # a label per position
            mask = counted(labels, mask)
        divergence = token_divergence(
            self.kind, logits, teacher, self.temperature, mask, beta=self.beta, alpha=self.alpha, chunk=self.chunk
        )
        if not self.ce_weight:
            return divergence
        return divergence + self.ce_weight * cross_entropy(logits, batch["labels"], label_mask(batch))


def _one_teacher(teacher_out: ModelOutput | TopK | Sequence[ModelOutput | TopK]) -> Tensor | TopK:
    if not isinstance(teacher_out, (ModelOutput, TopK)):
        if len(teacher_out) != 1:
            raise ValueError(f"TokenDivergence reads one teacher; got {len(teacher_out)}")
        teacher_out = teacher_out[0]
    return teacher_out if isinstance(teacher_out, TopK) else teacher_out.logits


def _token_terms(loss: nn.Module) -> list[TokenDivergence]:
    terms = loss.terms.values() if isinstance(loss, CompositeLoss) else [loss]
    return [term for term in terms if isinstance(term, TokenDivergence)]


def token_kinds(loss: nn.Module) -> set[str]:
    """The divergences the loss's token-level terms compute (empty: it has none)."""
    return {term.kind for term in _token_terms(loss)}


def token_temperature(loss: nn.Module) -> float | None:
    """The temperature of the loss's token-level term (what a top-k teacher cache is built at),
    or None when it has none. Two token terms at different temperatures would need two caches:
    refused."""
    temperatures = {term.temperature for term in _token_terms(loss)}
    if len(temperatures) > 1:
        raise ConfigError(
            "loss.terms",
            sorted(temperatures),
            "token terms at different temperatures; a top-k cache holds the teacher at one temperature",
        )
    return next(iter(temperatures), None)
