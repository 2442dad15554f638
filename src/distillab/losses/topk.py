"""A teacher's next-token distribution kept sparse (its top k tokens and the rest of its mass
as one bucket), and both models' log-probabilities over the vocabulary or those k + 1 buckets.
What the token-level divergences (token.py) and a top-k teacher cache read."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillab.config import check_int, check_number
from distillab.losses.reduce import upcast

Positions = tuple[Tensor, ...]  # one index tensor per leading axis: x[positions] is [n, ...]


@dataclass
class TopK:
    """A teacher's next-token distribution kept sparse.

    ``indices`` [..., k]: token ids; ``log_probs`` [..., k]: their log-probabilities at the
    loss's temperature (half precision is fine); ``tail`` [...]: the probability of every
    other token, 1 - sum exp(log_probs). The k + 1 buckets are renormalised before use,
    so half-precision rounding cannot make them sum to other than 1.
    """

    indices: Tensor
    log_probs: Tensor
    tail: Tensor


@torch.no_grad()
def topk_of(logits: Tensor, k: int, temperature: float = 1.0) -> TopK:
    """The teacher's k most likely tokens at temperature T, log p = log_softmax(t / T), and the
    mass of the rest (a log-sum-exp over the other tokens, not 1 - sum: no cancellation)."""
    k = check_int("k", k, low=1, high=logits.shape[-1])
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    log_p = F.log_softmax(upcast(logits) / temperature, dim=-1)
    log_probs, indices = log_p.topk(k, dim=-1)
    tail = torch.logsumexp(log_p.scatter(-1, indices, float("-inf")), dim=-1).exp()
    return TopK(indices, log_probs, tail)


def finite(log_p: Tensor) -> Tensor:
    return log_p.clamp_min(torch.finfo(log_p.dtype).min)


def log_probs_of(student: Tensor, teacher: Tensor | TopK, temperature: float) -> tuple[Tensor, Tensor]:
    """(log p, log q) for rows of logits: over the vocabulary, or over k + 1 buckets for a TopK."""
    z = upcast(student) / temperature
    if not isinstance(teacher, TopK):
        log_p = F.log_softmax(upcast(teacher.detach()) / temperature, dim=-1)
        return finite(log_p), finite(F.log_softmax(z, dim=-1))
    ids = teacher.indices.long()
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    # The student's mass outside the teacher's k ids: a log-sum-exp with those ids pushed to
    # the lowest finite value (not -inf: with k = V every entry is pushed, and a log-sum-exp
    # of nothing but -inf has a nan gradient).
    rest = torch.logsumexp(z.scatter(-1, ids, torch.finfo(z.dtype).min), dim=-1, keepdim=True)
    log_q = torch.cat([z.gather(-1, ids), rest], dim=-1) - lse
    log_top = upcast(teacher.log_probs.detach())
    log_tail = teacher.tail.detach().to(log_top.dtype).clamp_min(0).log().unsqueeze(-1)
    log_p = finite(torch.cat([log_top, log_tail], dim=-1))
    log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # the k + 1 buckets sum to 1
    return finite(log_p), finite(log_q)


def take_rows(x: Tensor | TopK, positions: Positions) -> Tensor | TopK:
    if isinstance(x, TopK):
        return TopK(x.indices[positions], x.log_probs[positions], x.tail[positions])
    return x[positions]
