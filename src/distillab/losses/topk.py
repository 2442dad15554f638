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
    logits [n, V], with the gradient written analytically: the [n, V] softmax is computed
    once, kept (as a CE term keeps its log-softmax) and becomes the gradient in place, so a
    step costs one softmax pass more than the student's own forward. Columns past k (the
    label, for a CE sharing the pass) are only read.

    With q = softmax(z), S = sum of q over the first k ids, q_rest = 1 - S, upstream
    gradients g_c (every id column) and g_r (the rest), G = sum_c g_c:
        d/dz_v = q_v (g_r S / q_rest - G) + sum_c g_c [v = id_c] - g_r q_v [v in the k ids] / q_rest
    i.e. q scaled per row plus a scatter of m values.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, ids: Tensor, k: int) -> Tensor:
        z32 = upcast(z)
        top, arg = z32.max(dim=-1, keepdim=True)
        q = F.softmax(z32, dim=-1)
        # log-sum-exp from the row's largest probability (>= 1/V, so its log is exact), and
        # log q at the ids as z - lse: exact even where q underflows.
        lse = top - q.gather(-1, arg).log()
        log_ids = z32.gather(-1, ids) - lse
        # The rest's mass as 1 - S (float32 resolves it down to ~1e-7; below that the bucket's
        # terms are below that too) rather than a log-sum-exp over V - k logits: a pass and a copy.
        rest = (1 - log_ids[:, :k].exp().sum(-1)).clamp_min(0)
        ctx.q, ctx.k, ctx.dtype = q, k, z.dtype
        ctx.save_for_backward(ids, log_ids, rest)
        return torch.cat([log_ids, rest.log().unsqueeze(-1)], dim=-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, ctx.q, k = handed_out(ctx.q, "a top-k divergence"), None, ctx.k
        ids, log_ids, rest = ctx.saved_tensors
        g_ids, g_rest = grad[:, :-1], grad[:, -1]
        # No rest left (k = V, or the k ids hold all the mass): its bucket has no gradient.
        empty = rest <= torch.finfo(rest.dtype).tiny
        g_rest, rest = torch.where(empty, 0, g_rest), torch.where(empty, 1, rest)
        q_ids = log_ids.exp()
        scale = g_rest * q_ids[:, :k].sum(-1) / rest - g_ids.sum(-1)  # per row
        g_ids = g_ids.clone()
        g_ids[:, :k] -= (g_rest / rest).unsqueeze(-1) * q_ids[:, :k]
        out = q.mul_(scale.unsqueeze(-1)).scatter_add_(-1, ids, g_ids.to(q.dtype))
        return out.to(ctx.dtype), None, None


def bucket_log_probs(
    student: Tensor, teacher: TopK, temperature: float, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(log p, log q) over the teacher's k + 1 buckets for rows of student logits [n, V], with
    one logits-sized buffer (the softmax that becomes the gradient); with ``labels`` [n] (at
    T = 1), also the student's log q of each label from the same pass (a CE's input)."""
    z = student if temperature == 1 else student / temperature
    ids = teacher.indices.long()
    k = ids.shape[-1]
    if labels is not None:
        ids = torch.cat([ids, labels.unsqueeze(-1)], dim=-1)
    out = finite(_BucketLogProbs.apply(z, ids, k))
    log_label = out[:, k] if labels is not None else None
    # A teacher with no mass outside its k ids (k = V, or a tail below half precision) has
    # no rest bucket: the student's share there is rounding (1 - S), which a reverse-type
    # divergence would divide by a zero teacher probability.
    no_rest = (teacher.tail <= 0).unsqueeze(-1)
    log_q = torch.cat([out[:, :k], out[:, -1:].masked_fill(no_rest, torch.finfo(out.dtype).min)], dim=-1)
    return teacher_buckets(teacher), log_q, log_label
