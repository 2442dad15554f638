"""Token-level divergences summed over a batch's kept positions: the reductions behind
losses/token_divergences.py. A dense teacher is read in chunks of positions (the gradient of
each chunk taken in forward, so autograd holds one chunk's graph); a top-k teacher over its k + 1
buckets (losses/topk.py: one softmax over the vocabulary, gradient by hand)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from distillab.losses.reduce import upcast
from distillab.losses.topk import (
    Positions,
    TopK,
    bucket_log_probs,
    handed_out,
    log_probs_of,
    take_rows,
)

Rows = Callable[[Tensor, Tensor], Tensor]


def _chunk_sum(per_row: Rows, student: Tensor, teacher: Tensor | TopK, temperature: float) -> Tensor:
    log_p, log_q = log_probs_of(student, teacher, temperature)
    return per_row(log_p, log_q).sum()


def bucket_sum(
    per_row: Rows,
    student_logits: Tensor,
    teacher: TopK,
    temperature: float,
    keep: Tensor | None,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """A top-k teacher: the divergence summed over the kept positions, on k + 1 buckets, the
    student's log-probabilities from :func:`bucket_log_probs` (one softmax pass, no autograd
    graph over V); with ``labels``, also each kept position's log q(label) and which rows those are."""
    vocab = student_logits.shape[-1]
    z = student_logits.reshape(-1, vocab)  # a view for contiguous logits
    lead = student_logits.dim() - 1
    flat = TopK(*(x.reshape(-1, *x.shape[lead:]) for x in (teacher.indices, teacher.log_probs, teacher.tail)))
    flat_labels = labels.reshape(-1) if labels is not None else None
    rows = None
    if keep is not None:
        rows = keep.reshape(-1).nonzero().squeeze(1)
        z, flat = z[rows], take_rows(flat, (rows,))
        flat_labels = flat_labels[rows] if flat_labels is not None else None
    log_p, log_q, log_label = bucket_log_probs(z, flat, temperature, flat_labels)
    return per_row(log_p, log_q).sum(), log_label, rows


class _ChunkedSum(torch.autograd.Function):
    """The sum over chunks of positions of _chunk_sum. Its gradient w.r.t. the student's
    logits is taken chunk by chunk in forward and written into one logits-sized buffer,
    which backward hands out: autograd never holds more than one chunk's graph."""

    @staticmethod
    def forward(
        ctx: Any, student: Tensor, per_row: Rows, teacher: Tensor | TopK, chunks: list[Positions], temperature: float
    ) -> Tensor:
        ctx.grad = torch.zeros_like(student)
        total = 0
        for positions in chunks:
            with torch.enable_grad():
                rows = student[positions].detach().requires_grad_(True)
                part = _chunk_sum(per_row, rows, take_rows(teacher, positions), temperature)
                (grad,) = torch.autograd.grad(part, rows)
            ctx.grad[positions] = grad
            total = total + part.detach()
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad, ctx.grad = handed_out(ctx.grad, "a token divergence"), None
        return grad.mul_(grad_out), None, None, None, None  # in place: no second logits-sized tensor


def _check_shapes(student_logits: Tensor, teacher: Tensor | TopK) -> None:
    lead = student_logits.shape[:-1]
    if isinstance(teacher, TopK):
        if (
            teacher.indices.shape[:-1] != lead
            or teacher.log_probs.shape != teacher.indices.shape
            or teacher.tail.shape != lead
        ):
            raise ValueError(
                f"TopK indices {tuple(teacher.indices.shape)}, log_probs {tuple(teacher.log_probs.shape)} "
                f"and tail {tuple(teacher.tail.shape)} do not fit student logits "
                f"{tuple(student_logits.shape)}"
            )
    elif teacher.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher.shape)} and student logits {tuple(student_logits.shape)} differ in shape"
        )


def divergence(
    per_row: Rows, student_logits: Tensor, teacher: Tensor | TopK, temperature: float, mask: Tensor | None, chunk: int
) -> Tensor:
    """T^2 * mean over the kept positions of per_row(log p, log q), ``chunk`` positions at a time.

    The kept positions are listed as indices (no copy of the logits, whatever their strides:
    a shifted ``logits[:, :-1]`` is read in place) and gathered one chunk at a time.
    """
    _check_shapes(student_logits, teacher)
    lead = student_logits.shape[:-1]
    keep = (
        torch.ones(lead, dtype=torch.bool, device=student_logits.device)
        if mask is None
        else mask.to(torch.bool).expand(lead)
    )
    kept = keep.nonzero()  # [n, len(lead)]
    n = kept.shape[0]
    if n == 0:
        return upcast(student_logits[..., :0]).sum()  # 0, still part of the graph
    if isinstance(teacher, TopK):
        total, _, _ = bucket_sum(per_row, student_logits, teacher, temperature, None if mask is None else keep)
        return temperature**2 * total / n
    chunks = [tuple(rows.unbind(1)) for rows in kept.split(chunk)]
    if torch.is_grad_enabled() and student_logits.requires_grad:
        total = _ChunkedSum.apply(student_logits, per_row, teacher, chunks, temperature)
    else:
        total = sum(_chunk_sum(per_row, student_logits[p], take_rows(teacher, p), temperature) for p in chunks)
    return temperature**2 * total / n
