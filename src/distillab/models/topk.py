"""A model's next-token distribution kept sparse: its top k tokens (or the top ones and tokens
sampled beyond them) and the rest of its mass. What a teacher's outputs are cached as, and what
the token-level losses read beside dense logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillab.core.config import check_int, check_number
from distillab.core.numerics import upcast


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


ROWS = 64  # rows of a [rows, V] working buffer: small enough to stay in cache across its passes
BLOCK = 256  # tokens per block of the two-level draw (a block by its sum, then a token in it)


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    """z / T in float32 at least, in a buffer of its own (the callers overwrite it in place)."""
    z = upcast(logits)
    return z / temperature if temperature != 1.0 or z is logits else z


@torch.no_grad()
def topk_of(logits: Tensor, k: int, temperature: float = 1.0) -> TopK:
    """The teacher's k most likely tokens at temperature T, log p = log_softmax(t / T), and the
    mass of the rest (a log-sum-exp over the other tokens, not 1 - sum: no cancellation)."""
    k = check_int("k", k, low=1, high=logits.shape[-1])
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    z = _scaled(logits, temperature)
    lse = torch.logsumexp(z, dim=-1)
    values, indices = z.topk(k, dim=-1)
    tail = (torch.logsumexp(z.scatter_(-1, indices, float("-inf")), dim=-1) - lse).exp()
    return TopK(indices, values - lse.unsqueeze(-1), tail)


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

    Rows are done ``ROWS`` at a time in one float32 buffer, in a few passes over the vocabulary
    (the top-k; the rest's weights exp(z - its max), copied in from the teacher's own dtype; sums
    per ``BLOCK`` tokens), and each draw picks a block by its sum and then a token
    inside it (exactly p_v / m, without a pass over every token per draw): a teacher cache builds
    this for every position, beside the teacher's own forward.
    """
    vocab = logits.shape[-1]
    k = check_int("k", k, low=2, high=vocab)
    samples = check_int("samples", samples, low=1, high=k - 1)
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    flat = logits.reshape(-1, vocab)
    head_size = k - samples
    # The next tokens after the head, 2s - 1 of them: whatever the draws hit, at least s - 1 are
    # left to fill the slots of tokens drawn more than once, so every slot holds another id.
    spares = min(2 * samples - 1, vocab - head_size)
    blocks = -(-vocab // BLOCK)
    dtype = upcast(flat[:1, :1]).dtype
    buffer = torch.empty(min(ROWS, flat.shape[0]), blocks * BLOCK, dtype=dtype, device=flat.device)
    ids, log_probs = [], []
    for start in range(0, flat.shape[0], ROWS):
        chunk = flat[start : start + ROWS]
        rows = chunk.shape[0]
        values, order = chunk.topk(head_size + spares, dim=-1)
        values = upcast(values) / temperature
        head, head_z, spare = order[:, :head_size], values[:, :head_size], order[:, head_size:]
        top_rest = values[:, head_size : head_size + 1]  # the largest z outside the head
        weights = buffer[:rows]
        weights[:, :vocab].copy_(chunk).sub_(top_rest * temperature)
        if temperature != 1.0:
            weights[:, :vocab].div_(temperature)
        weights = weights.scatter_(-1, head, float("-inf")).exp_()
        weights[:, vocab:] = 0.0  # the last block's padding (the buffer is reused: reset every time)
        block_sums = weights.view(rows, blocks, BLOCK).sum(-1)
        log_rest = block_sums.sum(-1, keepdim=True).log() + top_rest  # log of the rest's sum of exp(z)
        log_z = torch.logaddexp(torch.logsumexp(head_z, dim=-1, keepdim=True), log_rest)
        block = torch.multinomial(block_sums, samples, replacement=True, generator=generator)
        inside = weights.view(rows, blocks, BLOCK).gather(1, block.unsqueeze(-1).expand(rows, samples, BLOCK))
        draws = block * BLOCK + inverse_cdf_draw(inside, generator)
        drawn, counts = distinct_draws(draws, spare)
        ids.append(torch.cat([head, drawn], -1))
        # log(m c / s), -inf where c = 0
        log_probs.append(torch.cat([head_z - log_z, (counts.to(dtype) / samples).log() + log_rest - log_z], -1))
    shape = logits.shape[:-1]
    return TopK(
        torch.cat(ids).reshape(*shape, k),
        torch.cat(log_probs).reshape(*shape, k),
        flat.new_zeros(shape, dtype=dtype),
    )


def inverse_cdf_draw(weights: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``weights`` [..., B] (non-negative, not all zero), index i with
    probability w_i / sum w: the first i whose running sum exceeds u * sum w, u ~ U[0, 1), in
    float64; never a zero-weight index (the last positive one caps a rounding at the end)."""
    cdf = weights.double().cumsum(-1)
    u = torch.rand(cdf.shape[:-1], dtype=torch.float64, device=cdf.device, generator=generator).unsqueeze(-1)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    positions = torch.arange(weights.shape[-1], device=weights.device)
    last = torch.where(weights > 0, positions, 0).amax(-1, keepdim=True)
    return torch.minimum(index, last).squeeze(-1)


def distinct_draws(draws: Tensor, spare: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of s draws [n, s] as (ids, counts) [n, s]: each distinct token once with the number
    of times it was drawn, most drawn first, then count-0 slots holding the first ``spare`` ids
    [n, >= 2s - 1] that were not drawn (never an id twice in a row)."""
    s = draws.shape[-1]
    ordered = draws.sort(dim=-1).values
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    counts = torch.where(first, (ordered.unsqueeze(-1) == ordered.unsqueeze(-2)).sum(-1), 0)
    counts, rank = counts.sort(dim=-1, descending=True, stable=True)
    drawn = ordered.gather(-1, rank)
    taken = (spare.unsqueeze(-1) == draws.unsqueeze(-2)).any(-1)
    free = spare.gather(-1, taken.to(torch.int8).sort(dim=-1, stable=True).indices)
    slot = (torch.arange(s, device=draws.device) - first.sum(-1, keepdim=True)).clamp(0, free.shape[-1] - 1)
    return torch.where(counts > 0, drawn, free.gather(-1, slot)), counts
