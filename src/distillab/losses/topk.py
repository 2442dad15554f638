"""A teacher's next-token distribution kept sparse (its top k tokens and the rest of its mass
as one bucket), and both models' log-probabilities over the vocabulary or those k + 1 buckets.
What the token-level divergences (token_divergences.py) and a top-k teacher cache read."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from distillab.core.numerics import soft_log_probs
from distillab.losses.reduce import upcast
from distillab.models.topk import TopK, sampled_of, topk_of  # noqa: F401  (re-exported from losses)

Positions = tuple[Tensor, ...]  # one index tensor per leading axis: x[positions] is [n, ...]


def finite(log_p: Tensor) -> Tensor:
    return log_p.clamp_min(torch.finfo(log_p.dtype).min)


def log_probs_of(student: Tensor, teacher: Tensor | TopK, temperature: float) -> tuple[Tensor, Tensor]:
    """(log p, log q) for rows of logits: over the vocabulary, or over k + 1 buckets for a TopK."""
    if not isinstance(teacher, TopK):
        return finite(soft_log_probs(teacher.detach(), temperature)), finite(soft_log_probs(student, temperature))
    z = upcast(student) / temperature
    ids = teacher.indices.long()
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    # The student's mass outside the teacher's k ids: a log-sum-exp with those ids pushed to
    # the lowest finite value (not -inf: with k = V every entry is pushed, and a log-sum-exp
    # of nothing but -inf has a nan gradient).
    rest = torch.logsumexp(z.scatter(-1, ids, torch.finfo(z.dtype).min), dim=-1, keepdim=True)
    log_q = torch.cat([z.gather(-1, ids), rest], dim=-1) - lse
    return teacher_buckets(teacher), finite(log_q)


def teacher_buckets(teacher: TopK) -> Tensor:
    """log p over the teacher's k + 1 buckets (its k tokens, then the rest of its mass)."""
    log_top = upcast(teacher.log_probs.detach())
    log_tail = teacher.tail.detach().to(log_top.dtype).clamp_min(0).log().unsqueeze(-1)
    log_p = finite(torch.cat([log_top, log_tail], dim=-1))
    return finite(log_p - torch.logsumexp(log_p, dim=-1, keepdim=True))  # the k + 1 buckets sum to 1


def handed_out(grad: Tensor | None, what: str) -> Tensor:
    """A gradient computed in forward, which backward may hand out only once (the buffer is
    reused in place): ``what``'s second backward through the same forward is an error."""
    if grad is None:
        raise RuntimeError(
            f"{what}'s gradient was already handed out: backward through it once per forward "
            "(retain_graph is not supported)"
        )
    return grad


def take_rows(x: Tensor | TopK, positions: Positions) -> Tensor | TopK:
    if isinstance(x, TopK):
        return TopK(x.indices[positions], x.log_probs[positions], x.tail[positions])
    return x[positions]


class _BucketLogProbs(torch.autograd.Function):
    """log q at the ids [n, m] and of the rest (every token but the first k ids), from student
    logits [n, V] at temperature T, with the gradient written analytically: the [n, V] softmax
    is computed once, kept (as a CE term keeps its log-softmax) and becomes the gradient in
    place, so a step costs one softmax pass more than the student's own forward. Columns past
    k (the label, for a CE sharing the pass) are only read.

    With z = s / T (in float32 at least: half-precision logits are upcast before the division),
    q = softmax(z), K the first k ids, q_rest = sum of q outside K, r_v = q_v / q_rest (the
    student's distribution within the rest), upstream gradients g_c (every id column) and g_r
    (the rest), G = sum_c g_c:
        d/dz_v = g_r r_v - (g_r + G) q_v   (v outside K)
        d/dz_v = -(g_r + G) q_v            (v in K)
    plus g_c at each id column c, then / T. The rest is summed outside K directly, never taken
    as 1 - sum over K: a confident student's rest (1e-8 .. 1e-12) is below float32's resolution
    of 1 - S, where it came out as 0 (log -inf) or off by its own size.
    """

    @staticmethod
    def forward(ctx: Any, s: Tensor, ids: Tensor, k: int, temperature: float) -> Tensor:
        z = upcast(s)
        if temperature != 1:
            z = z.div_(temperature) if z is not s else z / temperature  # upcast first, then divide
        top, arg = z.max(dim=-1, keepdim=True)
        q = F.softmax(z, dim=-1)
        top_ids = ids[:, :k]
        q_top = q.gather(-1, top_ids)
        # The rest's mass summed over the tokens outside K, in q's own buffer (K zeroed, then
        # restored): no second logits-sized tensor.
        rest = q.scatter_(-1, top_ids, 0).sum(-1)
        q.scatter_(-1, top_ids, q_top)
        # Both parts over their sum: softmax's own normaliser (on CPU off by up to ~1e-5 in
        # float32 at V = 49k) cancels, so the k + 1 buckets sum to 1 as accurately as a float32
        # sum can; q too (it becomes the gradient).
        total = (rest + q_top.sum(-1)).unsqueeze(-1)
        # log-sum-exp from the row's largest probability (>= 1/V, so its log is exact), and
        # log q at the ids as z - lse: exact even where q underflows.
        lse = top - q.gather(-1, arg).log() + total.log()
        log_ids = z.gather(-1, ids) - lse
        log_rest = rest.log() - total.squeeze(-1).log()
        q.div_(total)
        # Below the floor (~6e-28 in float32 at V = 49k) underflowed q_v could weigh in the sum:
        # those rows (rare) take a log-sum-exp over their logits instead.
        low = ((rest < _floor(q)) & (k < z.shape[-1])).nonzero().squeeze(1)
        lse_rest = torch.logsumexp(z[low].scatter(-1, top_ids[low], float("-inf")), dim=-1)
        log_rest[low] = lse_rest - lse[low].squeeze(-1)
        # A rest of exactly 0 (the student's logits outside K all -inf) has no gradient either way.
        low, lse_rest = low[lse_rest > float("-inf")], lse_rest[lse_rest > float("-inf")]
        ctx.q, ctx.k, ctx.dtype, ctx.temperature = q, k, s.dtype, temperature
        ctx.low, ctx.lse_rest = low, lse_rest
        ctx.save_for_backward(s, ids, log_rest)
        return torch.cat([log_ids, log_rest.unsqueeze(-1)], dim=-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, ctx.q, k = handed_out(ctx.q, "a top-k divergence"), None, ctx.k
        s, ids, log_rest = ctx.saved_tensors
        top_ids = ids[:, :k]
        g_ids, g_rest = grad[:, :-1].to(q.dtype), grad[:, -1].to(q.dtype)
        # No rest left (k = V, or every logit outside the k ids is -inf): its bucket has no gradient.
        g_rest = torch.where(log_rest == float("-inf"), 0, g_rest)
        rest = log_rest.exp()
        ratio = torch.where(rest > 0, g_rest / rest.clamp_min(torch.finfo(rest.dtype).tiny), 0)  # r_v = q_v / q_rest
        ratio[ctx.low] = 0  # the low rows' r_v, from their logits below
        both = g_rest + g_ids.sum(-1)
        q_top = q.gather(-1, top_ids)
        out = q.mul_((ratio - both).unsqueeze(-1))  # every column as if outside K ...
        out.scatter_(-1, top_ids, q_top * -both.unsqueeze(-1))  # ... then K's, written (not a difference)
        if ctx.low.numel():
            low, z = ctx.low, upcast(s[ctx.low]) / ctx.temperature
            r = (z.scatter(-1, top_ids[low], float("-inf")) - ctx.lse_rest.unsqueeze(-1)).exp()
            out[low] += g_rest[low].unsqueeze(-1) * r
        out.scatter_add_(-1, ids, g_ids)
        if ctx.temperature != 1:
            out.div_(ctx.temperature)
        return out.to(ctx.dtype), None, None, None


def _floor(q: Tensor) -> float:
    """The smallest rest summed directly from q: its underflowed terms (V of them at most, each
    below the dtype's smallest normal number) stay under 1e-6 of it."""
    return q.shape[-1] * torch.finfo(q.dtype).tiny * 1e6


def bucket_log_probs(
    student: Tensor, teacher: TopK, temperature: float, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(log p, log q) over the teacher's k + 1 buckets for rows of student logits [n, V], with
    one logits-sized buffer (the softmax that becomes the gradient); with ``labels`` [n] (at
    T = 1), also the student's log q of each label from the same pass (a CE's input)."""
    ids = teacher.indices.long()
    k = ids.shape[-1]
    if labels is not None:
        ids = torch.cat([ids, labels.unsqueeze(-1)], dim=-1)
    out = finite(_BucketLogProbs.apply(student, ids, k, temperature))
    log_label = out[:, k] if labels is not None else None
    # A teacher with no mass outside its k ids (k = V, or a tail below half precision) has
    # no rest bucket: the student's share there, however small, a reverse-type divergence
    # would divide by a zero teacher probability.
    no_rest = (teacher.tail <= 0).unsqueeze(-1)
    log_q = torch.cat([out[:, :k], out[:, -1:].masked_fill(no_rest, torch.finfo(out.dtype).min)], dim=-1)
    return teacher_buckets(teacher), log_q, log_label
