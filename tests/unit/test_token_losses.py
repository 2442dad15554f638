"""Token-level divergences (forward/reverse KL, generalised JSD, TV, skew KLs) against values
computed by hand, and their chunked, masked and sparse (top-k) forms against the dense one."""

import math

import pytest
import torch
import torch.nn.functional as F
from hand import kl_by_hand, softmax_by_hand

from distillab.core.config import ConfigError
from distillab.losses.kd import soft_target_kl
from distillab.losses.token import (
    KINDS,
    TokenDivergence,
    divergence_and_ce,
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    token_divergence,
    total_variation,
)
from distillab.losses.topk import TopK, sampled_of, topk_of
from distillab.models.output import ModelOutput


def mix_by_hand(p: list[float], q: list[float], w: float) -> list[float]:
    return [w * pi + (1 - w) * qi for pi, qi in zip(p, q)]


# D(p, q) with p the teacher and q the student, as the papers define them.
BY_HAND = {
    "forward_kl": lambda p, q: kl_by_hand(p, q),
    "reverse_kl": lambda p, q: kl_by_hand(q, p),
    "jsd": lambda p, q, beta=0.5: (
        beta * kl_by_hand(p, mix_by_hand(p, q, beta)) + (1 - beta) * kl_by_hand(q, mix_by_hand(p, q, beta))
    ),
    "tv": lambda p, q: 0.5 * sum(abs(pi - qi) for pi, qi in zip(p, q)),
    "skew_kl": lambda p, q, alpha=0.1: kl_by_hand(p, mix_by_hand(p, q, alpha)),
    "skew_reverse_kl": lambda p, q, alpha=0.1: kl_by_hand(q, mix_by_hand(q, p, alpha)),
}

# p = (0.75, 0.25), q = (0.5, 0.5), worked out on paper:
#   forward  .75 ln 1.5 + .25 ln .5                                    = 0.1308120
#   reverse  .5 ln(2/3) + .5 ln 2                                      = 0.1438410
#   jsd .5   m = (.625, .375): .5(.75 ln 1.2 + .25 ln(2/3)) + .5(.5 ln .8 + .5 ln(4/3)) = 0.0338221
#   tv       .5 (.25 + .25)                                            = 0.25
#   skew .1  m = .1p + .9q = (.525, .475): .75 ln(.75/.525) + .25 ln(.25/.475)        = 0.1070427
#   srkl .1  m = .9p + .1q = (.725, .275): .5 ln(.5/.725) + .5 ln(.5/.275)            = 0.1131367
LITERAL = {
    "forward_kl": 0.1308120,
    "reverse_kl": 0.1438410,
    "jsd": 0.0338221,
    "tv": 0.25,
    "skew_kl": 0.1070427,
    "skew_reverse_kl": 0.1131367,
}

FUNCTIONS = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": generalized_jsd,
    "tv": total_variation,
    "skew_kl": skew_kl,
    "skew_reverse_kl": skew_reverse_kl,
}

S0, T0 = [0.5, -1.0, 2.0, 0.0], [1.0, 0.0, -0.5, 2.0]  # the one kept position of the tiny example


def tiny(garbage: float = 1e4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[1, 2, 4] student and teacher logits; position 1 is masked out and holds extreme values."""
    s = torch.tensor([[S0, [garbage, -garbage, 0.0, garbage]]], dtype=torch.float64)
    t = torch.tensor([[T0, [-garbage, garbage, garbage, 0.0]]], dtype=torch.float64)
    return s, t, torch.tensor([[True, False]])


def naive(kind: str, s: torch.Tensor, t: torch.Tensor, T: float, mask: torch.Tensor, beta: float, alpha: float):
    """The divergence written out on whole tensors with plain autograd: the reference for
    the chunked computation and its hand-made backward."""
    p, q = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    lp, lq = p.log(), q.log()
    kl = lambda a, la, b: (a * (la - b.log())).sum(-1)
    per_position = {
        "forward_kl": lambda: kl(p, lp, q),
        "reverse_kl": lambda: kl(q, lq, p),
        "jsd": lambda: beta * kl(p, lp, beta * p + (1 - beta) * q) + (1 - beta) * kl(q, lq, beta * p + (1 - beta) * q),
        "tv": lambda: 0.5 * (p - q).abs().sum(-1),
        "skew_kl": lambda: kl(p, lp, alpha * p + (1 - alpha) * q),
        "skew_reverse_kl": lambda: kl(q, lq, (1 - alpha) * p + alpha * q),
    }[kind]()
    return T**2 * (per_position * mask).sum() / mask.sum()


def random_case(seed: int = 0, shape=(3, 5, 7)):
    g = torch.Generator().manual_seed(seed)
    s = 2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    t = 2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape[:-1], generator=g) < 0.7
    mask[0, 0] = True
    return s, t, mask


@pytest.mark.parametrize("kind", KINDS)
def test_literal_hand_values_at_t1(kind):
    s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    assert token_divergence(kind, s, t).item() == pytest.approx(LITERAL[kind], abs=1e-6)
    assert FUNCTIONS[kind](s, t).item() == pytest.approx(LITERAL[kind], abs=1e-6)  # β = 0.5, α = 0.1 by default
    assert BY_HAND[kind]([0.75, 0.25], [0.5, 0.5]) == pytest.approx(LITERAL[kind], abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sparse", [False, True])
def test_each_divergence_matches_hand_value_with_padding_and_temperature(kind, sparse):
    T = 2.0
    s, t, mask = tiny()
    teacher = topk_of(t, 4, T) if sparse else t
    expected = T**2 * BY_HAND[kind](softmax_by_hand(T0, T), softmax_by_hand(S0, T))
    assert token_divergence(kind, s, teacher, T, mask).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_do_not_change_the_value_or_get_gradient(kind):
    values = []
    for garbage in (1e4, -3e38, float("nan")):  # masked positions are never read, not even nan
        s, t, mask = tiny(garbage)
        s.requires_grad_(True)
        for teacher in (t, topk_of(t, 2, 1.5)):
            loss = token_divergence(kind, s, teacher, 1.5, mask, chunk=1)
            (grad,) = torch.autograd.grad(loss, s)
            assert torch.isfinite(grad).all() and grad[0, 1].abs().max() == 0
            values.append(loss.item())
    assert values[0::2] == pytest.approx([values[0]] * 3, rel=1e-12)
    assert values[1::2] == pytest.approx([values[1]] * 3, rel=1e-12)


def test_forward_kl_equals_soft_target_kl_for_classifier_logits():
    s, t = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    assert forward_kl(s, t, 3.0).item() == pytest.approx(soft_target_kl(s, t, 3.0).item(), rel=1e-10)
    mask = torch.tensor([True, False, True, True, False, True])
    assert forward_kl(s, t, 3.0, mask).item() == pytest.approx(soft_target_kl(s, t, 3.0, mask).item(), rel=1e-10)


def test_jsd_endpoints_are_zero_and_its_limits_are_the_scaled_kls():
    s, t, mask = random_case(1)
    s, t = s / 4, 2 * t  # a flat student and a sharp teacher: the two KLs differ widely
    fkl, rkl = forward_kl(s, t, 2.0, mask).item(), reverse_kl(s, t, 2.0, mask).item()
    assert generalized_jsd(s, t, 2.0, mask, beta=0.0).item() == pytest.approx(0.0, abs=1e-12)
    assert generalized_jsd(s, t, 2.0, mask, beta=1.0).item() == pytest.approx(0.0, abs=1e-12)
    eps = 1e-4  # JSD_β = β KL(p||q) + O(β²) and (1-β) KL(q||p) + O((1-β)²): error O(ε), relative
    assert generalized_jsd(s, t, 2.0, mask, beta=eps).item() / eps == pytest.approx(fkl, rel=1e-3)
    assert generalized_jsd(s, t, 2.0, mask, beta=1 - eps).item() / eps == pytest.approx(rkl, rel=1e-3)
    # ... and not the other way round (the two KLs differ enough here to tell them apart)
    assert abs(fkl - rkl) > 0.2 * max(fkl, rkl)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_is_the_weighted_sum_of_the_two_skew_kls(beta):
    s, t, mask = random_case(2)
    jsd = generalized_jsd(s, t, 1.0, mask, beta=beta).item()
    parts = beta * skew_kl(s, t, 1.0, mask, alpha=beta) + (1 - beta) * skew_reverse_kl(s, t, 1.0, mask, alpha=1 - beta)
    assert jsd == pytest.approx(parts.item(), rel=1e-10)


def test_skew_endpoints_are_the_plain_kls_and_zero():
    s, t, mask = random_case(3)
    assert skew_kl(s, t, 2.0, mask, alpha=0.0).item() == pytest.approx(forward_kl(s, t, 2.0, mask).item(), rel=1e-12)
    assert skew_reverse_kl(s, t, 2.0, mask, alpha=0.0).item() == pytest.approx(
        reverse_kl(s, t, 2.0, mask).item(), rel=1e-12
    )
    assert skew_kl(s, t, 2.0, mask, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert skew_reverse_kl(s, t, 2.0, mask, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert 0 < skew_kl(s, t, 2.0, mask, alpha=0.5).item() < forward_kl(s, t, 2.0, mask).item()


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked_in_value_and_gradient(kind):
    s, t, mask = random_case(4)
    s.requires_grad_(True)
    reference = naive(kind, s, t, 1.7, mask, beta=0.3, alpha=0.2)
    (ref_grad,) = torch.autograd.grad(reference, s)
    for teacher in (t, topk_of(t, t.shape[-1], 1.7)):
        for chunk in (1, 3, 10_000):
            got = token_divergence(kind, s, teacher, 1.7, mask, beta=0.3, alpha=0.2, chunk=chunk)
            (grad,) = torch.autograd.grad(got, s)
            assert got.item() == pytest.approx(reference.item(), rel=1e-10)
            torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-12)
    with torch.no_grad():  # without autograd: the plain chunk loop, same value
        assert token_divergence(kind, s, t, 1.7, mask, beta=0.3, alpha=0.2, chunk=2).item() == pytest.approx(
            reference.item(), rel=1e-10
        )
    top = topk_of(t, 3, 1.7)  # k < V: every chunking gives the same value and gradient
    values, grads = zip(
        *[
            (v.item(), torch.autograd.grad(v, s)[0])
            for v in (token_divergence(kind, s, top, 1.7, mask, beta=0.3, alpha=0.2, chunk=c) for c in (1, 3, 10_000))
        ]
    )
    assert values == pytest.approx([values[-1]] * 3, rel=1e-12)
    for grad in grads[:-1]:
        torch.testing.assert_close(grad, grads[-1], rtol=1e-10, atol=1e-14)


def test_strided_and_half_precision_student_logits():
    s, t, mask = random_case(12, shape=(2, 6, 9))
    shifted = s.clone().requires_grad_(True)
    loss = reverse_kl(shifted[:, :-1], t[:, :-1], 1.5, mask[:, :-1], chunk=2)  # not contiguous: read in place
    (grad,) = torch.autograd.grad(loss, shifted)
    contiguous = s[:, :-1].contiguous().requires_grad_(True)
    reference = naive("reverse_kl", contiguous, t[:, :-1], 1.5, mask[:, :-1], 0.5, 0.1)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    torch.testing.assert_close(grad[:, :-1], torch.autograd.grad(reference, contiguous)[0], rtol=1e-8, atol=1e-12)
    assert grad[:, -1].abs().max() == 0
    half = s.to(torch.bfloat16).requires_grad_(True)
    value = forward_kl(half, t.float(), 1.5, mask, chunk=4)
    (half_grad,) = torch.autograd.grad(value, half)
    assert value.dtype == torch.float32 and half_grad.dtype == torch.bfloat16
    assert value.item() == pytest.approx(forward_kl(half.double(), t, 1.5, mask).item(), rel=1e-5)


def test_gradient_is_scaled_by_the_upstream_gradient_and_backward_runs_once():
    s, t, mask = random_case(11)
    s.requires_grad_(True)
    (3.0 * generalized_jsd(s, t, 2.0, mask, chunk=2)).backward()
    reference = 3.0 * naive("jsd", s, t, 2.0, mask, beta=0.5, alpha=0.1)
    torch.testing.assert_close(s.grad, torch.autograd.grad(reference, s)[0], rtol=1e-8, atol=1e-12)
    loss = forward_kl(s, t, 1.0, mask)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward"):
        loss.backward()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_sparse_with_k_equal_to_vocab_is_the_dense_divergence(kind, chunk):
    T = 1.5
    s, t, mask = random_case(5)
    s.requires_grad_(True)
    dense = token_divergence(kind, s, t, T, mask, beta=0.3, alpha=0.2, chunk=chunk)
    sparse = token_divergence(kind, s, topk_of(t, t.shape[-1], T), T, mask, beta=0.3, alpha=0.2, chunk=chunk)
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-10, abs=1e-14)
    (g_dense,) = torch.autograd.grad(dense, s)
    (g_sparse,) = torch.autograd.grad(sparse, s)
    torch.testing.assert_close(g_sparse, g_dense, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_with_small_k_is_finite_nonnegative_and_at_most_dense(kind):
    s, t, mask = random_case(6, shape=(2, 6, 50))
    s, t = s.float(), t.float()
    dense = token_divergence(kind, s, t, 2.0, mask).item()
    previous = 0.0
    for k in (1, 5, 20, 50):  # coarser buckets can only lose information (data processing)
        value = token_divergence(kind, s, topk_of(t, k, 2.0), 2.0, mask).item()
        assert math.isfinite(value) and value >= -1e-6 and value <= dense + 1e-5
        assert value >= previous - 1e-5  # top-k buckets refine as k grows
        previous = value
    assert previous == pytest.approx(dense, rel=1e-4)


def test_half_precision_topk_is_close_to_full_precision():
    s, t, mask = random_case(7, shape=(2, 4, 30))
    top = topk_of(t.float(), 8, 1.0)
    half = TopK(top.indices, top.log_probs.half(), top.tail.half())
    for kind in KINDS:
        full_value = token_divergence(kind, s.float(), top, 1.0, mask).item()
        half_value = token_divergence(kind, s.float(), half, 1.0, mask).item()
        assert half_value == pytest.approx(full_value, rel=2e-2, abs=1e-3)


def test_topk_of_keeps_the_largest_probabilities_and_the_rest_as_tail():
    t = torch.tensor([[[0.0, 3.0, 1.0, -2.0, 2.0]]])
    top = topk_of(t, 2, 2.0)
    p = softmax_by_hand(t[0, 0].tolist(), 2.0)
    assert top.indices.tolist() == [[[1, 4]]]
    assert top.log_probs.exp().flatten().tolist() == pytest.approx([p[1], p[4]], rel=1e-6)
    assert top.tail.item() == pytest.approx(p[0] + p[2] + p[3], rel=1e-6)
    assert topk_of(t, 5).tail.item() == 0.0
    for k in (0, 6, 2.0):
        with pytest.raises(ConfigError) as err:
            topk_of(t, k)
        assert err.value.key == "k"


def test_sampled_target_keeps_the_head_exact_and_equals_the_teacher_in_expectation():
    t = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0)) * 2
    p = torch.softmax(t / 2.0, dim=-1)
    generator = torch.Generator().manual_seed(1)
    mean = torch.zeros_like(p)
    for _ in range(3000):
        target = sampled_of(t, 10, 6, 2.0, generator)
        mean.scatter_add_(-1, target.indices, target.log_probs.float().exp())
    head = topk_of(t, 4, 2.0)
    assert torch.equal(target.indices[..., :4], head.indices)
    torch.testing.assert_close(target.log_probs[..., :4], head.log_probs)
    # Every slot holds another token; the weights place all the mass (no rest bucket).
    assert all(len(set(row)) == 10 for row in target.indices.reshape(-1, 10).tolist())
    torch.testing.assert_close(target.log_probs.exp().sum(-1), torch.ones(2, 3))
    assert torch.equal(target.tail, torch.zeros(2, 3))
    # Unbiased: the mean over draws is the teacher's distribution (3,000 draws: within ~0.01).
    assert (mean / 3000 - p).abs().max().item() < 0.012
    # The same generator state gives the same target.
    assert torch.equal(
        sampled_of(t, 10, 6, 2.0, torch.Generator().manual_seed(5)).indices,
        sampled_of(t, 10, 6, 2.0, torch.Generator().manual_seed(5)).indices,
    )
    for k, samples in ((10, 0), (10, 10), (1, 1)):
        with pytest.raises(ConfigError):
            sampled_of(t, k, samples)


def test_forward_kl_on_a_sampled_target_has_the_cross_entropy_gradient():
    """With p̂ the sampled target, d/dz of the forward KL (and of it + CE, one pass) is softmax(z) - p̂."""
    s, t, _ = random_case(9, shape=(2, 5, 30))
    target = sampled_of(t.float(), 8, 5, 1.0, torch.Generator().manual_seed(2))
    p_hat = torch.zeros(2, 5, 30).scatter_add_(-1, target.indices, target.log_probs.exp())
    labels = torch.randint(0, 30, (2, 5), generator=torch.Generator().manual_seed(3))
    z = s.float().requires_grad_(True)
    divergence, ce = divergence_and_ce("forward_kl", z, target, labels, None, None)
    (divergence + ce).backward()
    expected = (2 * torch.softmax(z.detach(), -1) - p_hat - F.one_hot(labels, 30)) / 10
    torch.testing.assert_close(z.grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_flow_to_student_logits_only(kind):
    s, t, mask = random_case(8)
    s, t = s.requires_grad_(True), t.requires_grad_(True)
    top = topk_of(t, 3, 1.0)
    top = TopK(top.indices, top.log_probs.requires_grad_(True), top.tail.requires_grad_(True))
    for teacher, leaves in ((t, [t]), (top, [top.log_probs, top.tail])):
        s.grad = None
        token_divergence(kind, s, teacher, 2.0, mask, alpha=0.2, chunk=4).backward()
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
        assert all(leaf.grad is None for leaf in leaves)
        assert s.grad[~mask].abs().max() == 0


def test_no_kept_position_gives_zero_that_still_backpropagates():
    s, t, _ = random_case(9)
    s.requires_grad_(True)
    loss = reverse_kl(s, t, 1.0, torch.zeros(s.shape[:-1], dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and s.grad.abs().sum() == 0


def test_shape_mismatch_is_reported():
    s = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="differ in shape"):
        forward_kl(s, torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="do not fit"):
        forward_kl(s, topk_of(torch.zeros(2, 4, 5), 2))


@pytest.mark.parametrize("kind", KINDS)
def test_term_reads_mask_and_dense_or_sparse_teacher(kind):
    s, t, mask = random_case(10)
    term = TokenDivergence(kind, temperature=2.0, beta=0.4, alpha=0.3, chunk=2)
    expected = token_divergence(kind, s, t, 2.0, mask, beta=0.4, alpha=0.3).item()
    batch = {"mask": mask}
    assert term(ModelOutput(s), ModelOutput(t), batch).item() == pytest.approx(expected, rel=1e-12)
    assert term(ModelOutput(s), [ModelOutput(t)], batch).item() == pytest.approx(expected, rel=1e-12)
    top = topk_of(t, t.shape[-1], 2.0)
    assert term(ModelOutput(s), top, batch).item() == pytest.approx(expected, rel=1e-10)
    unmasked = token_divergence(kind, s, t, 2.0, None, beta=0.4, alpha=0.3).item()
    assert term(ModelOutput(s), ModelOutput(t), {}).item() == pytest.approx(unmasked, rel=1e-12)
    with pytest.raises(ValueError, match="one teacher"):
        term(ModelOutput(s), [ModelOutput(t), ModelOutput(t)], batch)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"kind": "kl"}, "kind"),
        ({"kind": None}, "kind"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"beta": 1.5}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": True}, "beta"),
        ({"kind": "jsd", "beta": 0.0}, "beta"),
        ({"kind": "jsd", "beta": 1}, "beta"),
        ({"alpha": -0.5}, "alpha"),
        ({"alpha": "abc"}, "alpha"),
        ({"kind": "skew_kl", "alpha": 1.0}, "alpha"),
        ({"kind": "skew_reverse_kl", "alpha": 1}, "alpha"),
        ({"chunk": 0}, "chunk"),
        ({"chunk": 2.5}, "chunk"),
        ({"chunk": True}, "chunk"),
    ],
)
def test_invalid_knobs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        TokenDivergence(**kwargs)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")


def test_valid_edge_knobs_are_accepted():
    assert TokenDivergence("skew_kl", alpha=0.0).alpha == 0.0  # the plain forward KL
    assert TokenDivergence("forward_kl", beta=0.0, alpha=1.0).kind == "forward_kl"  # knobs it does not read


@pytest.mark.parametrize("kind", KINDS)
def test_divergence_and_ce_in_one_pass_equal_the_two_terms_apart(kind):
    """loss=token_kd's fused form: same value and same gradient as TokenDivergence + CrossEntropy."""
    from distillab.losses import CrossEntropy

    torch.manual_seed(3)
    s = (torch.randn(3, 5, 40) * 2).double().requires_grad_()
    teacher = topk_of(torch.randn(3, 5, 40).double() * 3, 6)
    labels = torch.randint(0, 40, (3, 5))
    batch = {"labels": labels, "mask": torch.rand(3, 5) > 0.3, "labelled": torch.tensor([True, False, True])}
    fused = TokenDivergence(kind, beta=0.3, alpha=0.2, ce_weight=0.7)(ModelOutput(s), teacher, batch)
    (g_fused,) = torch.autograd.grad(fused, s)
    apart = TokenDivergence(kind, beta=0.3, alpha=0.2)(ModelOutput(s), teacher, batch) + 0.7 * CrossEntropy()(
        ModelOutput(s), teacher, batch
    )
    (g_apart,) = torch.autograd.grad(apart, s)
    assert fused.item() == pytest.approx(apart.item(), rel=1e-10)
    assert torch.allclose(g_fused, g_apart, rtol=1e-8, atol=1e-12)
