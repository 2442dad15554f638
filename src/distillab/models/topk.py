"""A model's next-token distribution kept sparse: its top k tokens (or the top ones and tokens
sampled beyond them) and the rest of its mass. What a teacher's outputs are cached as, and what
the token-level losses read beside dense logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillab.core.config import check_int, check_number
from distillab.core.numerics import soft_log_probs


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
    log_p = soft_log_probs(logits, temperature)
    log_probs, indices = log_p.topk(k, dim=-1)
    tail = torch.logsumexp(log_p.scatter(-1, indices, float("-inf")), dim=-1).exp()
    return TopK(indices, log_probs, tail)


@torch.no_grad()
def sampled_of(
    logits: Tensor, k: int, samples: int, temperature: float = 1.0, generator: torch.Generator | None = None
) -> TopK:
    """The teacher's top k - ``samples`` tokens exactly, and its remaining mass spread over tokens
    drawn from the rest of its distribution: "random sampling KD" (Anshumann et al. 2025,
    "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs"), here with the head
    kept exact.

    With p the teacher's distribution at T, H its top k - s tokens, m = sum of p outside H, and
    c_v the number of s draws (with replacement, from p restricted to the rest, p_v / m) that
    hit token v, the target is p̂_v = p_v on H and p̂_v = m c_v / s elsewhere. E[p̂] = p, so the
    gradient of the cross-entropy -sum p̂ log q, q - p̂, is the dense forward KL's gradient in
    expectation (a top-k target is biased: the student's tail keeps its own shape). ``tail``
    is 0: every bit of mass is placed. Slots past the distinct tokens drawn have p̂ = 0 (log
    -inf) and ids not otherwise present. Only forward-KL-type terms (linear in p) read it
    without bias.
    """
    vocab = logits.shape[-1]
    k = check_int("k", k, low=2, high=vocab)
    samples = check_int("samples", samples, low=1, high=k - 1)
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    log_p = soft_log_probs(logits, temperature).reshape(-1, vocab)
    head_log_p, head = log_p.topk(k - samples, dim=-1)
    rest = log_p.scatter(-1, head, float("-inf"))
    log_m = torch.logsumexp(rest, dim=-1, keepdim=True)  # finite: at least one token is outside H
    draws = torch.multinomial((rest - log_m).exp(), samples, replacement=True, generator=generator)
    counts = torch.zeros_like(log_p).scatter_add_(-1, draws, torch.ones_like(draws, dtype=log_p.dtype))
    # The head's ids below every count, so that padding slots (count 0) never repeat them.
    counts, drawn = counts.scatter_(-1, head, -1.0).topk(samples, dim=-1)
    drawn_log_p = (counts / samples).log() + log_m  # log(m c / s); -inf where c = 0
    shape = logits.shape[:-1]
    return TopK(
        torch.cat([head, drawn], -1).reshape(*shape, k),
        torch.cat([head_log_p, drawn_log_p], -1).reshape(*shape, k),
        log_p.new_zeros(shape),
    )
