"""Token-level divergences between a teacher's and a student's next-token distributions.

Logits are [batch, seq, vocab] for language models ([batch, classes] works the same way).
With p = softmax(t / T) the teacher's distribution and q = softmax(s / T) the student's,
every function here returns

    L = T^2 * (1 / |kept|) * sum_{i in kept} D(p_i, q_i)

- T softens both distributions; the T^2 is Hinton et al.'s (2015: it keeps the KL's gradient
  scale independent of T) and is applied to every kind alike, so T means the same for each.
- ``kept`` are the positions where ``mask`` ([batch, seq], True = counts) is true (all when
  it is None); 0 when none is. Masked positions are never read, whatever they hold.
- The kept positions are flattened and processed ``chunk`` rows at a time (sum, then one
  division by the count), so the value equals the unchunked one. With gradients on, each
  chunk's gradient is taken as the chunk is computed and written into one buffer the size
  of the logits, which backward returns: no chunk x vocab intermediate outlives its chunk,
  and the only full-size tensor is that gradient (in the logits' dtype).
- The teacher is a target: it is detached, and gradients reach the student's logits only.

The teacher is either dense logits [..., V] or a sparse :class:`TopK`: its k most likely
tokens plus the rest of its mass as one extra bucket. The student is then gathered at the
same k ids plus its own remaining mass as the extra bucket, so D compares two
distributions over k + 1 outcomes (with k = V this is exactly the dense D). Coarse-graining
never increases these divergences (all are f-divergences: data-processing inequality), so
the sparse value is <= the dense one. A TopK is taken as given: it must already be at
temperature T (``topk_of(logits, k, T)``); only the student is softened here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.losses.kd import cross_entropy
from distillab.losses.reduce import label_mask
from distillab.losses.token_reduce import Rows, bucket_sum, divergence
from distillab.losses.topk import TopK
from distillab.models.output import ModelOutput

KINDS = ("forward_kl", "reverse_kl", "jsd", "tv", "skew_kl", "skew_reverse_kl")


# ---- one divergence per row, on log-probabilities over the last axis --------------------
# Log-probabilities arrive clamped to the lowest finite value (topk.finite): exp gives exactly
# 0 and differences stay finite, so 0 * log 0 = 0 without a select, and no nan in backward.


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) per row."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _log_mix(log_p: Tensor, log_q: Tensor, w: float) -> Tensor:
    """log(w p + (1 - w) q), in log space (a product of two tiny probabilities must not underflow)."""
    if w == 0:
        return log_q
    if w == 1:
        return log_p
    return torch.logaddexp(log_p + math.log(w), log_q + math.log1p(-w))


def _forward_kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    return _kl_rows(log_p, log_q)


def _reverse_kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    return _kl_rows(log_q, log_p)


def _jsd_rows(log_p: Tensor, log_q: Tensor, beta: float) -> Tensor:
    log_m = _log_mix(log_p, log_q, beta)
    return beta * _kl_rows(log_p, log_m) + (1 - beta) * _kl_rows(log_q, log_m)


def _tv_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)


def _skew_kl_rows(log_p: Tensor, log_q: Tensor, alpha: float) -> Tensor:
    return _kl_rows(log_p, _log_mix(log_p, log_q, alpha))


def _skew_reverse_kl_rows(log_p: Tensor, log_q: Tensor, alpha: float) -> Tensor:
    return _kl_rows(log_q, _log_mix(log_q, log_p, alpha))


# ---- the divergences --------------------------------------------------------------------


def forward_kl(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    chunk: int = 1024,
) -> Tensor:
    """Forward KL (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):

        L = T^2 * KL(p || q) = T^2 * sum_v p_v (log p_v - log q_v),   p teacher, q student

    Mode-covering: the student is pushed to put mass wherever the teacher does.
    """
    return divergence(_forward_kl_rows, student_logits, teacher, temperature, mask, chunk)


def reverse_kl(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    chunk: int = 1024,
) -> Tensor:
    """Reverse KL (Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models", ICLR):

        L = T^2 * KL(q || p) = T^2 * sum_v q_v (log q_v - log p_v)

    Mode-seeking: the student is pushed off tokens the teacher finds unlikely. (MiniLLM
    optimises the sequence-level reverse KL with policy gradients; this is its token-level
    term, the exact per-position reverse KL.)
    """
    return divergence(_reverse_kl_rows, student_logits, teacher, temperature, mask, chunk)


def generalized_jsd(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    beta: float = 0.5,
    chunk: int = 1024,
) -> Tensor:
    """Generalised Jensen-Shannon divergence (Agarwal et al. 2024, "On-Policy Distillation of
    Language Models: Learning from Self-Generated Mistakes" (GKD), ICLR; after Huszár 2015),
    with P = p the teacher and Q = q the student, as in the paper's D(p_T || p_S):

        JSD_β(P || Q) = β KL(P || M) + (1 - β) KL(Q || M),   M = β P + (1 - β) Q,   β in [0, 1]
        L = T^2 * JSD_β(p || q)

    β = 1/2 is the ordinary JSD. Both endpoints are identically 0 (β = 0: M = Q and
    KL(Q || Q) = 0; β = 1: M = P). Near them, expanding KL(Q || Q + β(P - Q)) = β^2/2 χ²(P || Q)
    + O(β^3) and its mirror image:

        JSD_β = β KL(P || Q) + O(β^2),              so  JSD_β / β       -> KL(p || q) (forward KL) as β -> 0
        JSD_β = (1 - β) KL(Q || P) + O((1 - β)^2),  so  JSD_β / (1 - β) -> KL(q || p) (reverse KL) as β -> 1

    So small β behaves like a forward KL scaled by β, β near 1 like a reverse KL scaled by
    1 - β. The value here is the definition itself, also at the endpoints (where it is 0);
    some trainers (TRL's GKDTrainer) instead return the unscaled forward/reverse KL at β = 0
    and 1, a jump from the interior: for those, use :func:`forward_kl` / :func:`reverse_kl`.
    """
    return divergence(partial(_jsd_rows, beta=beta), student_logits, teacher, temperature, mask, chunk)


def total_variation(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    chunk: int = 1024,
) -> Tensor:
    """Total variation distance (as a distillation loss: Wen et al. 2023, "f-Divergence
    Minimization for Sequence-Level Knowledge Distillation", ACL):

        TV(p, q) = 1/2 * sum_v |p_v - q_v|,   in [0, 1];   L = T^2 * TV(p, q)
    """
    return divergence(_tv_rows, student_logits, teacher, temperature, mask, chunk)


def skew_kl(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    alpha: float = 0.1,
    chunk: int = 1024,
) -> Tensor:
    """α-skew KL (Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for Large Language
    Models", ICML; default α = 0.1 as there), p teacher, q student:

        SKL_α(p, q) = KL(p || α p + (1 - α) q),   L = T^2 * SKL_α(p, q)

    α mixes the teacher (the KL's own first argument) into the student side, which keeps the
    log-ratio bounded by log(1/α) where q is tiny. α = 0 is the forward KL; α = 1 gives 0.
    """
    return divergence(partial(_skew_kl_rows, alpha=alpha), student_logits, teacher, temperature, mask, chunk)


def skew_reverse_kl(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    alpha: float = 0.1,
    chunk: int = 1024,
) -> Tensor:
    """α-skew reverse KL (Ko et al. 2024, DistiLLM, ICML), p teacher, q student:

        SRKL_α(p, q) = KL(q || (1 - α) p + α q),   L = T^2 * SRKL_α(p, q)

    As in the paper, α is again the weight of the KL's own first argument (here the student)
    in the mixture. α = 0 is the reverse KL; α = 1 gives 0. With α = 1 - β and α = β these
    two make up the generalised JSD: JSD_β = β SKL_β + (1 - β) SRKL_{1-β}.
    """
    return divergence(partial(_skew_reverse_kl_rows, alpha=alpha), student_logits, teacher, temperature, mask, chunk)


def rows_of(kind: str, beta: float = 0.5, alpha: float = 0.1) -> Rows:
    """The per-row divergence named ``kind``, on (log p, log q)."""
    knob = {"jsd": {"beta": beta}, "skew_kl": {"alpha": alpha}, "skew_reverse_kl": {"alpha": alpha}}.get(kind, {})
    fn = {
        "forward_kl": _forward_kl_rows,
        "reverse_kl": _reverse_kl_rows,
        "jsd": _jsd_rows,
        "tv": _tv_rows,
        "skew_kl": _skew_kl_rows,
        "skew_reverse_kl": _skew_reverse_kl_rows,
    }[kind]
    return partial(fn, **knob)


def divergence_and_ce(
    kind: str,
    student_logits: Tensor,
    teacher: TopK,
    labels: Tensor,
    mask: Tensor | None,
    label_keep: Tensor | None,
    *,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """(divergence at T = 1, next-token CE) from one pass over the vocabulary: the divergence
    averaged over ``mask``, CE = -log q(label) averaged over ``label_keep`` (positions with a
    label the student may learn). Equal to :func:`token_divergence` and a CE term computed apart."""
    lead = student_logits.shape[:-1]
    keep = None if mask is None else mask.to(torch.bool).expand(lead)
    total, log_label, rows = bucket_sum(rows_of(kind, beta, alpha), student_logits, teacher, 1.0, keep, labels)
    n = log_label.shape[0]
    divergence = total / max(n, 1)
    weights = (
        torch.ones(n, dtype=log_label.dtype, device=log_label.device)
        if label_keep is None
        else label_keep.to(torch.bool).expand(lead).reshape(-1).to(log_label.dtype)
    )
    if label_keep is not None and rows is not None:
        weights = weights[rows]
    ce = -(log_label * weights).sum() / weights.sum().clamp_min(1)
    return divergence, ce


def token_divergence(
    kind: str,
    student_logits: Tensor,
    teacher: Tensor | TopK,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    *,
    beta: float = 0.5,
    alpha: float = 0.1,
    chunk: int = 1024,
) -> Tensor:
    """The divergence named ``kind`` (one of :data:`KINDS`); β is read by jsd, α by the skew kinds."""
    return divergence(rows_of(kind, beta, alpha), student_logits, teacher, temperature, mask, chunk)


class TokenDivergence(nn.Module):
    """Distillation term: one token-level divergence between the teacher's and the student's
    next-token distributions, averaged over the batch's ``mask``; see :func:`token_divergence`.

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

    needs: frozenset[str] = frozenset()

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

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: dict[str, Any]) -> Tensor:
        teacher = _one_teacher(teacher_out)
        logits, mask = student_out.logits, batch.get("mask")
        if self.ce_weight and isinstance(teacher, TopK) and self.temperature == 1:
            divergence, ce = divergence_and_ce(
                self.kind, logits, teacher, batch["labels"], mask, label_mask(batch), beta=self.beta, alpha=self.alpha
            )
            return divergence + self.ce_weight * ce
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
    terms = getattr(loss, "terms", {"": loss})
    return [term for term in terms.values() if isinstance(term, TokenDivergence)]


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
