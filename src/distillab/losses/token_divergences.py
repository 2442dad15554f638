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

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from distillab.losses.kd import counted
from distillab.losses.token_reduce import bucket_sum, divergence
from distillab.losses.token_rows import rows_of
from distillab.losses.topk import TopK

__all__ = [
    "divergence_and_ce",
    "forward_kl",
    "generalized_jsd",
    "reverse_kl",
    "skew_kl",
    "skew_reverse_kl",
    "token_divergence",
    "total_variation",
]


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
    """The divergence named ``kind`` (one of token_rows.KINDS); β is read by jsd, α by the skew kinds."""
    return divergence(rows_of(kind, beta, alpha), student_logits, teacher, temperature, mask, chunk)


_KNOBS = ("beta", "alpha")  # the keywords of token_divergence that only some kinds read


def _of_kind(name: str, kind: str, doc: str, knob: str | None = None) -> Callable[..., Tensor]:
    """:func:`token_divergence` with ``kind`` fixed, published as ``name``: its signature less
    ``kind`` and the knobs ``kind`` does not read (so passing one is a TypeError, as for any
    function), and ``doc`` for its docstring."""
    full = inspect.signature(token_divergence)
    signature = full.replace(
        parameters=[
            p for p in full.parameters.values() if p.name != "kind" and (p.name not in _KNOBS or p.name == knob)
        ]
    )

    def of_kind(*args: Any, **kwargs: Any) -> Tensor:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{name}() {err}") from None
        bound.apply_defaults()
        return token_divergence(kind, **bound.arguments)

    of_kind.__name__ = of_kind.__qualname__ = name
    of_kind.__doc__ = doc
    of_kind.__signature__ = signature
    return of_kind


forward_kl = _of_kind(
    "forward_kl",
    "forward_kl",
    """Forward KL (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):

        L = T^2 * KL(p || q) = T^2 * sum_v p_v (log p_v - log q_v),   p teacher, q student

    Mode-covering: the student is pushed to put mass wherever the teacher does.
    """,
)

reverse_kl = _of_kind(
    "reverse_kl",
    "reverse_kl",
    """Reverse KL (Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models", ICLR):

        L = T^2 * KL(q || p) = T^2 * sum_v q_v (log q_v - log p_v)

    Mode-seeking: the student is pushed off tokens the teacher finds unlikely. (MiniLLM
    optimises the sequence-level reverse KL with policy gradients; this is its token-level
    term, the exact per-position reverse KL.)
    """,
)

generalized_jsd = _of_kind(
    "generalized_jsd",
    "jsd",
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
    """,
    knob="beta",
)

total_variation = _of_kind(
    "total_variation",
    "tv",
    """Total variation distance (as a distillation loss: Wen et al. 2023, "f-Divergence
    Minimization for Sequence-Level Knowledge Distillation", ACL):

        TV(p, q) = 1/2 * sum_v |p_v - q_v|,   in [0, 1];   L = T^2 * TV(p, q)
    """,
)

skew_kl = _of_kind(
    "skew_kl",
    "skew_kl",
    """α-skew KL (Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for Large Language
    Models", ICML; default α = 0.1 as there), p teacher, q student:

        SKL_α(p, q) = KL(p || α p + (1 - α) q),   L = T^2 * SKL_α(p, q)

    α mixes the teacher (the KL's own first argument) into the student side, which keeps the
    log-ratio bounded by log(1/α) where q is tiny. α = 0 is the forward KL; α = 1 gives 0.
    """,
    knob="alpha",
)

skew_reverse_kl = _of_kind(
    "skew_reverse_kl",
    "skew_reverse_kl",
    """α-skew reverse KL (Ko et al. 2024, DistiLLM, ICML), p teacher, q student:

        SRKL_α(p, q) = KL(q || (1 - α) p + α q),   L = T^2 * SRKL_α(p, q)

    As in the paper, α is again the weight of the KL's own first argument (here the student)
    in the mixture. α = 0 is the reverse KL; α = 1 gives 0. With α = 1 - β and α = β these
    two make up the generalised JSD: JSD_β = β SKL_β + (1 - β) SRKL_{1-β}.
    """,
    knob="alpha",
)


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
    label the student may learn). A position whose label is -100 (kd.IGNORE_INDEX) is in
    neither mean, with a mask or without. Equal to :func:`token_divergence` over the same
    positions and a CE term computed apart."""
    lead = student_logits.shape[:-1]
    keep = counted(labels, mask)  # every row it keeps has a real label: gathered in the one pass
    keep = None if keep is None else keep.expand(lead)
    label_keep = counted(labels, label_keep)
    total, log_label, rows = bucket_sum(rows_of(kind, beta, alpha), student_logits, teacher, 1.0, keep, labels)
    n = log_label.shape[0]
    divergence = total / max(n, 1)
    weights = (
        torch.ones(n, dtype=log_label.dtype, device=log_label.device)
        if label_keep is None
        else label_keep.expand(lead).reshape(-1).to(log_label.dtype)
    )
    if label_keep is not None and rows is not None:
        weights = weights[rows]
    ce = -(log_label * weights).sum() / weights.sum().clamp_min(1)
    return divergence, ce
