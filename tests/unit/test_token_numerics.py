"""Token-level losses at a real vocabulary (SmolLM2's, V = 49,152) against float64 references:
a confident student's top-k rest bucket (1e-1 .. 1e-48 of its mass), half-precision logits at
T != 1, DKD with -inf logits, and one rule for labels of -100 on every token path."""

import math

import pytest
import torch
import torch.nn.functional as F

from distillab.core.numerics import soft_log_probs
from distillab.losses import CrossEntropy
from distillab.losses.dkd import DKD, dkd_parts
from distillab.losses.kd import cross_entropy
from distillab.losses.token import KINDS, TokenDivergence, divergence_and_ce, forward_kl, token_divergence
from distillab.losses.token_rows import rows_of
from distillab.losses.topk import TopK, teacher_buckets, topk_of
from distillab.models.output import ModelOutput
from distillab.models.topk import distinct_draws, sampled_of

V, K = 49_152, 8
# The student's lead over its other logits per row: its mass outside the teacher's k tokens is
# then ~0.3, 1e-3, 1e-6, 8e-9, 5e-11, 3e-13 and 1e-48 (the last below float32's range).
MARGINS = (12.0, 18.0, 25.0, 30.0, 35.0, 40.0, 120.0)


def confident(seed: int = 0, margins=MARGINS) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits [1, n, V] (float32): the student sure of the teacher's top token."""
    g = torch.Generator().manual_seed(seed)
    n = len(margins)
    teacher = 2 * torch.randn(1, n, V, generator=g)
    student = torch.randn(1, n, V, generator=g)
    student.scatter_(-1, teacher.argmax(-1, keepdim=True), torch.tensor(margins).view(1, n, 1))
    return student, teacher


def bucketed_log_q(student: torch.Tensor, top: TopK, temperature: float = 1.0) -> torch.Tensor:
    """The student's log q over the k + 1 buckets in float64, its rest a log-sum-exp over the
    tokens outside the teacher's k (the reference: no 1 - sum anywhere)."""
    z = student.double() / temperature
    ids = top.indices.long()
    rest = torch.logsumexp(z.scatter(-1, ids, float("-inf")), -1, keepdim=True)
    return torch.cat([z.gather(-1, ids), rest], -1) - torch.logsumexp(z, -1, keepdim=True)


def reference(kind: str, student: torch.Tensor, top: TopK, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean over positions of D(p, q) on the k + 1 buckets, in float64."""
    log_p = teacher_buckets(TopK(top.indices, top.log_probs.double(), top.tail.double()))
    per_row = rows_of(kind)(log_p, bucketed_log_q(student, top, temperature))
    return temperature**2 * per_row.flatten().mean()


def rows(x: torch.Tensor | TopK, i: int) -> torch.Tensor | TopK:
    if isinstance(x, TopK):
        return TopK(x.indices[:, i : i + 1], x.log_probs[:, i : i + 1], x.tail[:, i : i + 1])
    return x[:, i : i + 1]


def assert_grad_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Float32 against float64, entry by entry: 1e-4 relative, or 1e-7 of the largest entry
    (a rest token's entry, g_r q_v / q_rest ~ 1 / (n V) ~ 3e-6 of it, is still checked)."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-7 * scale)


def test_topk_forward_kl_of_a_confident_student_is_the_float64_value_and_gradient():
    s, t = confident()
    top = topk_of(t, K)
    z = s.clone().requires_grad_(True)
    value = forward_kl(z, top)
    (grad,) = torch.autograd.grad(value, z)
    z64 = s.double().requires_grad_(True)
    expected = reference("forward_kl", z64, top)
    (grad64,) = torch.autograd.grad(expected, z64)
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert_grad_close(grad, grad64)
    for i in range(len(MARGINS)):  # each row alone: the bucket of every rest mass, down to 1e-48
        row = forward_kl(rows(s, i), rows(top, i)).item()
        assert row == pytest.approx(reference("forward_kl", rows(s, i), rows(top, i)).item(), rel=1e-5)
        # Coarse-graining cannot increase a KL (data processing): sparse <= dense, row by row.
        assert row <= forward_kl(rows(s, i).double(), rows(t, i).double()).item() * (1 + 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_every_topk_divergence_of_a_confident_student_is_the_float64_value(kind):
    s, t = confident(1)
    top = topk_of(t, K, 2.0)
    value = token_divergence(kind, s, top, 2.0).item()
    assert math.isfinite(value)
    assert value == pytest.approx(reference(kind, s, top, 2.0).item(), rel=1e-5, abs=1e-9)
    assert value <= token_divergence(kind, s.double(), t.double(), 2.0).item() * (1 + 1e-6) + 1e-9


def test_fused_topk_and_ce_of_a_confident_student_is_the_float64_value_and_gradient():
    s, t = confident(2)
    top = topk_of(t, K)
    labels = t.argmax(-1)
    labels[0, 1] = 7  # a label the student finds unlikely
    z = s.clone().requires_grad_(True)
    divergence, ce = divergence_and_ce("forward_kl", z, top, labels, None, None)
    (grad,) = torch.autograd.grad(divergence + ce, z)
    z64 = s.double().requires_grad_(True)
    expected = reference("forward_kl", z64, top)
    ce64 = F.cross_entropy(z64[0], labels[0])
    (grad64,) = torch.autograd.grad(expected + ce64, z64)
    assert math.isfinite(divergence.item()) and math.isfinite(ce.item())
    assert divergence.item() == pytest.approx(expected.item(), rel=1e-5)
    assert ce.item() == pytest.approx(ce64.item(), rel=1e-5)
    assert divergence.item() <= forward_kl(s.double(), t.double()).item()
    assert_grad_close(grad, grad64)


@pytest.mark.parametrize("temperature", [1.5, 3.0, 5.0])
def test_half_precision_student_on_the_topk_path_is_divided_after_the_upcast(temperature):
    """bf16 logits divided by T in bf16 are rounded to 2^-9 of z / T: 3e-3 .. 2e-2 off per row
    here. Upcast first, the path computes exactly what it does on the float32 logits."""
    g = torch.Generator().manual_seed(3)
    t = 3 * torch.randn(1, 8, V, generator=g)
    s = 3 * torch.randn(1, 8, V, generator=g)
    s = s.scatter(-1, t.argmax(-1, keepdim=True), torch.linspace(4, 25, 8).view(1, 8, 1)).to(torch.bfloat16)
    top = topk_of(t, K, temperature)
    for i in range(8):  # row by row: a row's error is not averaged away by the others
        half = rows(s, i).clone().requires_grad_(True)
        value = forward_kl(half, rows(top, i), temperature)
        (grad,) = torch.autograd.grad(value, half)
        upcast = rows(s, i).float().requires_grad_(True)
        expected = forward_kl(upcast, rows(top, i), temperature)
        (grad32,) = torch.autograd.grad(expected, upcast)
        assert value.item() == pytest.approx(expected.item(), rel=1e-5)
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(grad.float(), grad32.to(torch.bfloat16).float(), rtol=0, atol=0)
    # ... and that is the float64 value, to float32's accuracy on a KL of ~0.05
    assert forward_kl(s, top, temperature).item() == pytest.approx(
        reference("forward_kl", s, top, temperature).item(), rel=1e-4
    )


def dkd_case(seed: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = 3 * torch.randn(4, V, generator=g)
    t = 3 * torch.randn(4, V, generator=g)
    labels = torch.tensor([5, 17, 1000, 49_000])
    return s, t, labels


def test_dkd_with_minus_inf_logits_is_finite_and_the_value_with_a_very_negative_logit():
    s, t, labels = dkd_case()
    t[0, 3] = -math.inf  # a token the teacher rules out
    t[1, 17] = -math.inf  # ... and the target itself
    t[2, 40_000:] = -math.inf  # a vocabulary tail both models mask (padded embedding rows)
    s[2, 40_000:] = -math.inf
    values, grads = [], []
    for low in (-math.inf, -1e4):
        z = s.masked_fill(s == -math.inf, low).requires_grad_(True)
        value = DKD()(ModelOutput(z), ModelOutput(t.masked_fill(t == -math.inf, low)), {"labels": labels})
        (grad,) = torch.autograd.grad(value, z)
        assert math.isfinite(value.item()) and torch.isfinite(grad).all()
        values.append(value.item())
        grads.append(grad)
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-9)


def test_dkd_with_no_teacher_mass_off_the_target_has_zero_nckd():
    """p_y = 1: TCKD = KL((1, 0) || (q_y, 1 - q_y)) = -log q_y, and NCKD (whose weight in KD is
    1 - p_y = 0, its p^ = 0/0) adds 0."""
    s, t, labels = dkd_case(5)
    t[0] = -math.inf
    t[0, labels[0]] = 0.0
    tckd, nckd = dkd_parts(s, soft_log_probs(t, 4.0), labels, 4.0)
    others = dkd_parts(s[1:], soft_log_probs(t[1:], 4.0), labels[1:], 4.0)
    log_q_y = torch.log_softmax(s[0].double() / 4.0, -1)[labels[0]].item()
    assert math.isfinite(tckd.item()) and math.isfinite(nckd.item())
    assert tckd.item() == pytest.approx((-log_q_y + 3 * others[0].item()) / 4, rel=1e-5)
    assert nckd.item() == pytest.approx(3 * others[1].item() / 4, rel=1e-5)


def ignored_case(seed: int = 6):
    """Logits [2, 4, V], a top-k teacher, labels with three -100 positions, and the same batch
    with those positions removed ([1, 5, ...])."""
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randn(2, 4, V, generator=g)).double()
    t = 3 * torch.randn(2, 4, V, generator=g).double()
    labels = torch.randint(0, V, (2, 4), generator=g)
    labels[0, 1] = labels[1, 0] = labels[1, 3] = -100
    keep = labels != -100
    return s, t, labels, keep


def removed(x: torch.Tensor | TopK, keep: torch.Tensor) -> torch.Tensor | TopK:
    if isinstance(x, TopK):
        return TopK(*(removed(f, keep) for f in (x.indices, x.log_probs, x.tail)))
    return x[keep].unsqueeze(0)


def test_cross_entropy_ignores_minus_100_with_or_without_a_mask():
    s, _, labels, keep = ignored_case()
    expected = F.cross_entropy(s[keep], labels[keep]).item()
    everywhere = torch.ones_like(keep)
    assert cross_entropy(s, labels).item() == pytest.approx(expected, rel=1e-12)
    assert cross_entropy(s, labels, everywhere).item() == pytest.approx(expected, rel=1e-12)
    mask = everywhere.clone()
    mask[0, 0] = False
    both = keep & mask
    assert cross_entropy(s, labels, mask).item() == pytest.approx(F.cross_entropy(s[both], labels[both]).item())
    assert cross_entropy(s[:1, 1:2], labels[:1, 1:2]).item() == 0.0  # nothing counted: 0, not nan


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("ce_weight", [0.0, 0.5])
def test_token_term_ignores_minus_100_on_every_path(kind, sparse, ce_weight):
    """Dense, top-k and (top-k with CE at T = 1) the fused pass: a -100 position is in neither
    the sum nor the count, with a mask or without."""
    s, t, labels, keep = ignored_case()
    teacher = topk_of(t, K) if sparse else ModelOutput(t)
    small = topk_of(removed(t, keep), K) if sparse else ModelOutput(removed(t, keep))
    term = TokenDivergence(kind, ce_weight=ce_weight)
    expected = term(ModelOutput(removed(s, keep)), small, {"labels": removed(labels, keep)}).item()
    z = s.clone().requires_grad_(True)
    without = term(ModelOutput(z), teacher, {"labels": labels})
    (grad,) = torch.autograd.grad(without, z)
    with_mask = term(ModelOutput(s), teacher, {"labels": labels, "mask": torch.ones_like(keep)}).item()
    assert without.item() == pytest.approx(expected, rel=1e-10)
    assert with_mask == pytest.approx(expected, rel=1e-10)
    assert grad[~keep].abs().max() == 0  # an ignored position is not read
    mask = torch.ones_like(keep)
    mask[0, 0] = False  # a mask and -100 together: both removed
    both = keep & mask
    expected = term(
        ModelOutput(removed(s, both)),
        removed(teacher, both) if sparse else ModelOutput(removed(t, both)),
        {"labels": removed(labels, both)},
    ).item()
    assert term(ModelOutput(s), teacher, {"labels": labels, "mask": mask}).item() == pytest.approx(expected, rel=1e-10)


def test_fused_pass_with_minus_100_equals_the_two_terms_apart():
    s, t, labels, _ = ignored_case(7)
    top = topk_of(t, K)
    for mask in (None, torch.tensor([[True, True, False, True], [True, True, True, True]])):
        batch = {"labels": labels} if mask is None else {"labels": labels, "mask": mask}
        divergence, ce = divergence_and_ce("forward_kl", s, top, labels, mask, mask)
        apart_ce = CrossEntropy()(ModelOutput(s), top, batch).item()
        apart_kd = TokenDivergence("forward_kl")(ModelOutput(s), top, batch).item()
        assert ce.item() == pytest.approx(apart_ce, rel=1e-10)
        assert divergence.item() == pytest.approx(apart_kd, rel=1e-10)


def test_kl_rows_is_finite_where_both_distributions_rule_a_class_out():
    from distillab.losses.kd import kl_rows

    log_p = torch.log_softmax(torch.tensor([[0.0, 1.0, float("-inf")]]), -1)
    log_q = torch.log_softmax(torch.tensor([[0.5, 0.2, float("-inf")]]), -1)
    expected = kl_rows(log_p[:, :2], log_q[:, :2])
    assert torch.isfinite(kl_rows(log_p, log_q)).all()
    assert torch.allclose(kl_rows(log_p, log_q), expected)


def test_sampled_target_at_a_real_vocabulary_places_the_teacher_mass_exactly():
    """A confident bf16 teacher (its rest 1e-1 .. 1e-48 of the mass), more rows than one working
    buffer: the head equals the exact top tokens and log-probabilities (float64), the drawn
    weights sum to the rest's mass, every slot holds another id, and the drawn ids lie outside
    the head."""
    _, teacher = confident(1)
    teacher.scatter_(-1, teacher.argmax(-1, keepdim=True), torch.tensor(MARGINS).view(1, -1, 1))
    teacher = teacher.repeat(1, 5, 1).to(torch.bfloat16)  # 35 rows: three working buffers
    top = sampled_of(teacher, K, 3, 1.0, torch.Generator().manual_seed(0))
    exact = F.log_softmax(teacher.double(), -1)
    head_lp, head = exact.topk(K - 3, -1)
    torch.testing.assert_close(top.log_probs[..., : K - 3].double(), head_lp, rtol=0, atol=2e-5)
    assert torch.equal(top.indices[..., : K - 3].sort(-1).values, head.sort(-1).values)
    rest_mass = 1 - head_lp.exp().sum(-1)
    rest_log = torch.logsumexp(exact.scatter(-1, head, float("-inf")), -1)  # no cancellation
    got = torch.logsumexp(top.log_probs[..., K - 3 :].double(), -1)
    torch.testing.assert_close(got, rest_log, rtol=1e-5, atol=0)
    assert rest_mass.min() < 1e-40 or rest_log.min() < -90  # the smallest rest is below float32's range
    for row in top.indices.reshape(-1, K).tolist():
        assert len(set(row)) == K
    drawn = top.indices[..., K - 3 :].unsqueeze(-1)
    assert not (drawn == top.indices[..., : K - 3].unsqueeze(-2)).any()


def test_distinct_draws_counts_each_token_once_and_fills_repeats_with_spares():
    draws = torch.tensor([[7, 3, 7, 7], [5, 6, 8, 9], [4, 4, 4, 4]])
    spare = torch.tensor([[7, 2, 3, 1, 0, 11, 12], [5, 6, 10, 8, 9, 13, 14], [4, 20, 21, 22, 23, 24, 25]])
    ids, counts = distinct_draws(draws, spare)
    assert counts.tolist() == [[3, 1, 0, 0], [1, 1, 1, 1], [4, 0, 0, 0]]
    assert ids[:, :2].tolist()[0] == [7, 3] and ids[0, 2:].tolist() == [2, 1]
    assert sorted(ids[1].tolist()) == [5, 6, 8, 9]
    assert ids[2].tolist() == [4, 20, 21, 22]


def test_sampled_target_never_draws_past_the_vocabulary():
    """A vocabulary that is not a whole number of blocks, and more rows than one working buffer
    (the buffer's padding is reused): every id is a real token, and the weights still sum to 1."""
    logits = torch.randn(3, 50, 400, generator=torch.Generator().manual_seed(0))
    top = sampled_of(logits, 32, 8, 1.0, torch.Generator().manual_seed(1))
    assert top.indices.max().item() < 400
    torch.testing.assert_close(
        top.log_probs.double().exp().sum(-1), torch.ones(3, 50, dtype=torch.float64), rtol=0, atol=1e-6
    )
