"""One divergence D(p, q) per row of log-probabilities over the last axis (p the teacher, q the
student): what the token-level divergences (token_divergences.py) sum over the kept positions.

Log-probabilities arrive clamped to the lowest finite value (topk.finite): exp gives exactly
0 and differences stay finite, so 0 * log 0 = 0 without a select, and no nan in backward.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from distillab.losses.token_reduce import Rows

KINDS = ("forward_kl", "reverse_kl", "jsd", "tv", "skew_kl", "skew_reverse_kl")


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
