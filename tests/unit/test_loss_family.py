"""Soft-target CE, logit MSE, DKD, feature terms, layer mapping, mutual learning and the
composite loss, each against values computed by hand (plain ``math`` on small lists)."""

import math

import pytest
import torch
from hand import entropy_by_hand, kl_by_hand, softmax_by_hand
from torch import nn

from conftest import config_error_key
from distillab.losses import (
    DKD,
    AttentionLoss,
    CompositeLoss,
    HiddenStateLoss,
    HintonKD,
    LogitMSE,
    MutualLoss,
    SoftTargetCE,
    SoftTargetKL,
    attention_kl,
    attention_mse,
    dkd_parts,
    hidden_cosine,
    hidden_mse,
    logit_mse,
    mutual_kl,
    soft_target_ce,
    soft_target_kl,
)
from distillab.losses.layer_map import layer_pairs
from distillab.models.output import EncoderShape, ModelOutput

F64 = torch.float64


# ---------------------------------------------------------------- hand helpers (plain math)


def ce_by_hand(p: list[float], q: list[float]) -> float:
    return -sum(pi * math.log(qi) for pi, qi in zip(p, q))


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def log_t64(p: list[float]) -> torch.Tensor:
    """log of a distribution given by hand, as a [1, classes] tensor."""
    return t64([[math.log(v) for v in p]])


# ---------------------------------------------------------------- 1. soft-target cross-entropy

S3, T3 = [1.0, -0.5, 0.2], [2.0, 0.0, -1.0]


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_soft_target_ce_is_t2_times_cross_entropy_of_hand_distributions(T):
    p, q = softmax_by_hand(T3, T), softmax_by_hand(S3, T)
    got = soft_target_ce(t64([S3]), log_t64(p), T).item()
    assert got == pytest.approx(T**2 * ce_by_hand(p, q), rel=1e-10)


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_soft_target_ce_is_kl_plus_t2_teacher_entropy(T):
    p = softmax_by_hand(T3, T)
    ce = soft_target_ce(t64([S3]), log_t64(p), T).item()
    kl = soft_target_kl(t64([S3]), t64([T3]), T).item()
    assert ce == pytest.approx(kl + T**2 * entropy_by_hand(p), rel=1e-10)
    # the teacher entropy is strictly positive here, so the two really differ
    assert ce - kl > 0.1


def test_soft_target_ce_module_single_teacher_and_matched_student():
    T = 2.0
    p, q = softmax_by_hand(T3, T), softmax_by_hand(S3, T)
    term = SoftTargetCE(temperature=T)
    got = term(ModelOutput(t64([S3])), ModelOutput(t64([T3])), {}).item()
    assert got == pytest.approx(T**2 * ce_by_hand(p, q), rel=1e-10)
    # student == teacher: the CE does not reach 0 but T^2 H(p)
    matched = term(ModelOutput(t64([T3])), ModelOutput(t64([T3])), {}).item()
    assert matched == pytest.approx(T**2 * entropy_by_hand(p), rel=1e-10)
    # a list holding a single teacher is the same thing
    assert term(ModelOutput(t64([S3])), [ModelOutput(t64([T3]))], {}).item() == pytest.approx(got, rel=1e-12)


def test_soft_target_ce_mask_drops_positions():
    T = 1.0
    p, q = softmax_by_hand(T3, T), softmax_by_hand(S3, T)
    s = t64([S3, [50.0, -50.0, 0.0]])
    log_p = torch.cat([log_t64(p), log_t64([0.001, 0.001, 0.998])])
    got = soft_target_ce(s, log_p, T, torch.tensor([True, False])).item()
    assert got == pytest.approx(ce_by_hand(p, q), rel=1e-10)


# ---------------------------------------------------------------- 2. logit MSE


def test_logit_mse_hand_value_and_mask():
    # diffs (1, 0, -2): (1 + 0 + 4) / 3
    assert logit_mse(t64([[1.0, 2.0, 3.0]]), t64([[0.0, 2.0, 5.0]])).item() == pytest.approx(5 / 3, rel=1e-12)
    s = t64([[1.0, 2.0, 3.0], [100.0, 0.0, 0.0]])
    t = t64([[0.0, 2.0, 5.0], [0.0, 0.0, 0.0]])
    # unmasked: (5/3 + 10000/3) / 2
    assert logit_mse(s, t).item() == pytest.approx((5 / 3 + 10000 / 3) / 2, rel=1e-12)
    assert logit_mse(s, t, torch.tensor([True, False])).item() == pytest.approx(5 / 3, rel=1e-12)


def test_logit_mse_module_weighted_mean_of_teacher_logits():
    s = ModelOutput(t64([[2.0, 2.0, 2.0]]))
    t1, t2 = ModelOutput(t64([[0.0, 0.0, 0.0]])), ModelOutput(t64([[4.0, 4.0, 8.0]]))
    # mean target (2, 2, 4): diffs (0, 0, -2) -> 4/3
    assert LogitMSE()(s, [t1, t2], {}).item() == pytest.approx(4 / 3, rel=1e-12)
    # weights 3:1 -> target 0.75 t1 + 0.25 t2 = (1, 1, 2): diffs (1, 1, 0) -> 2/3
    weighted = LogitMSE(combine="weighted", teacher_weights=[3, 1])
    assert weighted(s, [t1, t2], {}).item() == pytest.approx(2 / 3, rel=1e-12)
    # teacher=1 reads t2 alone: diffs (-2, -2, -6) -> 44/3
    assert LogitMSE(teacher=1)(s, [t1, t2], {}).item() == pytest.approx(44 / 3, rel=1e-12)
    # single teacher, not in a list
    assert LogitMSE()(s, t2, {}).item() == pytest.approx(44 / 3, rel=1e-12)


# ---------------------------------------------------------------- 3. DKD

DS, DT = [1.0, 0.5, -1.0], [2.0, 0.0, 1.0]


def dkd_by_hand(s: list[float], t: list[float], y: int, T: float) -> tuple[float, float]:
    p, q = softmax_by_hand(t, T), softmax_by_hand(s, T)
    b_t, b_s = [p[y], 1 - p[y]], [q[y], 1 - q[y]]
    tckd = kl_by_hand(b_t, b_s)
    p_hat = [p[c] / (1 - p[y]) for c in range(len(p)) if c != y]
    q_hat = [q[c] / (1 - q[y]) for c in range(len(q)) if c != y]
    return tckd, kl_by_hand(p_hat, q_hat)


@pytest.mark.parametrize("y", [0, 1, 2])
@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_parts_match_hand_tckd_and_nckd(y, T):
    tckd, nckd = dkd_parts(t64([DS]), log_t64(softmax_by_hand(DT, T)), torch.tensor([y]), T)
    want_tckd, want_nckd = dkd_by_hand(DS, DT, y, T)
    assert tckd.item() == pytest.approx(want_tckd, rel=1e-9, abs=1e-14)
    assert nckd.item() == pytest.approx(want_nckd, rel=1e-9, abs=1e-14)
    assert want_tckd > 1e-4 and want_nckd > 1e-4  # both parts are non-trivial for this input


def test_dkd_parts_concrete_numbers_at_t1_y0():
    # p = softmax(2, 0, 1), q = softmax(1, .5, -1); closed-form check of the helper itself
    tckd, nckd = dkd_parts(t64([DS]), log_t64(softmax_by_hand(DT)), torch.tensor([0]), 1.0)
    # p_y = e^2/(e^2+1+e) = 0.6652409558, q_y = e/(e+e^.5+e^-1) = 0.5740969930 (hand)
    py, qy = 0.6652409558, 0.5740969930
    assert tckd.item() == pytest.approx(py * math.log(py / qy) + (1 - py) * math.log((1 - py) / (1 - qy)), rel=1e-8)
    # p^ = (1, e)/(1+e) , q^ = (e^.5, e^-1)/(e^.5+e^-1)
    ph = [1 / (1 + math.e), math.e / (1 + math.e)]
    qh = [math.exp(0.5) / (math.exp(0.5) + math.exp(-1)), math.exp(-1) / (math.exp(0.5) + math.exp(-1))]
    assert nckd.item() == pytest.approx(kl_by_hand(ph, qh), rel=1e-9)


def test_dkd_module_is_t2_alpha_tckd_plus_beta_nckd():
    T, alpha, beta, y = 2.0, 1.5, 3.0, 1
    tckd, nckd = dkd_by_hand(DS, DT, y, T)
    term = DKD(alpha=alpha, beta=beta, temperature=T)
    got = term(ModelOutput(t64([DS])), ModelOutput(t64([DT])), {"labels": torch.tensor([y])}).item()
    assert got == pytest.approx(T**2 * (alpha * tckd + beta * nckd), rel=1e-9)


@pytest.mark.parametrize("y", [0, 2])
@pytest.mark.parametrize("T", [1.0, 3.0])
def test_classic_kd_is_tckd_plus_one_minus_teacher_py_times_nckd(y, T):
    s, t = t64([DS]), t64([DT])
    tckd, nckd = dkd_parts(s, log_t64(softmax_by_hand(DT, T)), torch.tensor([y]), T)
    p_y = softmax_by_hand(DT, T)[y]
    kd = soft_target_kl(s, t, T).item() / T**2
    assert kd == pytest.approx(tckd.item() + (1 - p_y) * nckd.item(), rel=1e-9)


def test_dkd_ignores_label_minus_100_positions_in_sequences():
    T, y = 2.0, 2
    tckd, nckd = dkd_by_hand(DS, DT, y, T)
    # [batch=1, seq=3, classes=3]; position 1 has label -100 and a very different student
    s = t64([[DS, [40.0, -40.0, 0.0], DS]])
    t = t64([[DT, [-30.0, 30.0, 0.0], DT]])
    labels = torch.tensor([[y, -100, y]])
    term = DKD(alpha=1.0, beta=2.0, temperature=T)
    got = term(ModelOutput(s), ModelOutput(t), {"labels": labels}).item()
    assert got == pytest.approx(T**2 * (tckd + 2.0 * nckd), rel=1e-9)
    # the ignored position would have changed the value (so the test can fail)
    counted = term(ModelOutput(s), ModelOutput(t), {"labels": torch.tensor([[y, 0, y]])}).item()
    assert abs(counted - got) > 1.0
    # an explicit mask combines with the -100 rule
    s2 = t64([[DS, [40.0, -40.0, 0.0], [-9.0, 9.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    got2 = term(ModelOutput(s2), ModelOutput(t), {"labels": labels, "mask": mask}).item()
    assert got2 == pytest.approx(T**2 * (tckd + 2.0 * nckd), rel=1e-9)


def test_dkd_stays_finite_for_a_certain_teacher():
    s = torch.tensor([[0.0, 0.0, 0.0]])
    t = torch.tensor([[500.0, 0.0, 0.0]])  # p_y = 1 in float32
    tckd, nckd = dkd_parts(s, torch.log_softmax(t, -1), torch.tensor([0]), 1.0)
    assert math.isfinite(tckd.item()) and math.isfinite(nckd.item())
    # b_t = (1, 0), b_s = (1/3, 2/3): TCKD = ln 3; p^_t = (1/2, 1/2) = q^_s: NCKD = 0
    assert tckd.item() == pytest.approx(math.log(3), rel=1e-5)
    assert nckd.item() == pytest.approx(0.0, abs=1e-5)  # float32: log p^ is (-500) - (-500 + ln 2)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": "x"}, "alpha"),
        ({"beta": -0.5}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -2.0}, "temperature"),
        ({"combine": "max"}, "combine"),
    ],
)
def test_dkd_invalid_knobs_name_the_key(kwargs, key):
    assert config_error_key(lambda: DKD(**kwargs)) == key


# ---------------------------------------------------------------- 4. hidden-state distances


def test_hidden_mse_and_cosine_orthogonal_vectors_with_mask():
    # [batch=1, seq=2, width=2]; position 1 holds a huge, opposite pair and is masked out
    s = t64([[[1.0, 0.0], [100.0, 0.0]]])
    t = t64([[[0.0, 1.0], [-100.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    # mse: ((1-0)^2 + (0-1)^2) / 2 = 1 ; cosine: cos = 0 -> 1 - 0 = 1
    assert hidden_mse(s, t, mask).item() == pytest.approx(1.0, rel=1e-12)
    assert hidden_cosine(s, t, mask).item() == pytest.approx(1.0, rel=1e-12)
    # unmasked: position 1 has mse 200^2/2 = 20000 and cos = -1 -> 2
    assert hidden_mse(s, t).item() == pytest.approx((1 + 20000) / 2, rel=1e-12)
    assert hidden_cosine(s, t).item() == pytest.approx((1 + 2) / 2, rel=1e-12)


def test_hidden_mse_and_cosine_general_hand_values():
    s, t = t64([[[3.0, 1.0]]]), t64([[[1.0, 1.0]]])
    assert hidden_mse(s, t).item() == pytest.approx((4 + 0) / 2, rel=1e-12)
    # cos = (3 + 1) / (sqrt(10) sqrt(2))
    assert hidden_cosine(s, t).item() == pytest.approx(1 - 4 / math.sqrt(20), rel=1e-12)
    # cosine ignores scale, mse does not
    assert hidden_cosine(5 * s, t).item() == pytest.approx(1 - 4 / math.sqrt(20), rel=1e-12)
    assert hidden_cosine(t, t).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- 5. HiddenStateLoss

STUDENT_1L = EncoderShape(num_layers=1, hidden_size=2, num_heads=1, intermediate_size=4)
TEACHER_2L = EncoderShape(2, 3, 1, 4)


def _projected_term():
    term = HiddenStateLoss(metric="mse", layers="uniform")
    term.setup(STUDENT_1L, [TEACHER_2L])
    proj = term.projections[0]
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        proj.bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
    student = ModelOutput(
        logits=torch.zeros(1, 2),
        hidden_states=(torch.full((1, 2, 2), 77.0), torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])),
    )
    teacher = ModelOutput(
        logits=torch.zeros(1, 2),
        hidden_states=(
            torch.full((1, 2, 3), -50.0),
            torch.full((1, 2, 3), 30.0),
            torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]),
        ),
    )
    return term, student, teacher


def test_hidden_state_loss_projection_setup():
    term = HiddenStateLoss(layers="uniform")
    term.setup(STUDENT_1L, [TEACHER_2L])
    assert term.pairs == [(1, 2)]
    assert len(term.projections) == 1
    proj = term.projections[0]
    assert isinstance(proj, nn.Linear) and proj.in_features == 2 and proj.out_features == 3


def test_hidden_state_loss_with_projection_matches_hand_value():
    term, student, teacher = _projected_term()
    # W h + b: (1, 2) -> (1.5, 1, 3); (3, -1) -> (3.5, -2, 2)
    # minus teacher layer 2: (0.5, 0, 2) -> 4.25 ; (3.5, -2, 2) -> 20.25 ; mean over 6 entries
    assert term(student, teacher, {"inputs": torch.zeros(1)}).item() == pytest.approx(24.5 / 6, rel=1e-6)
    # attention_mask drops the second token: 4.25 / 3
    batch = {"inputs": {"attention_mask": torch.tensor([[1, 0]])}}
    assert term(student, teacher, batch).item() == pytest.approx(4.25 / 3, rel=1e-6)
    # teacher given as a list: teacher=0 is read
    assert term(student, [teacher], {"inputs": torch.zeros(1)}).item() == pytest.approx(24.5 / 6, rel=1e-6)


def test_hidden_state_loss_projection_receives_hand_gradient():
    term, student, teacher = _projected_term()
    term(student, teacher, {"inputs": torch.zeros(1)}).backward()
    proj = term.projections[0]
    # dL/db_k = sum_tokens 2 diff_k / 6: diffs (0.5, 0, 2), (3.5, -2, 2)
    assert proj.bias.grad.tolist() == pytest.approx([4 / 3, -2 / 3, 4 / 3], rel=1e-6)
    # dL/dW_kj = sum_tokens 2 diff_k h_j / 6 with h = (1, 2), (3, -1)
    want_w = [
        [(2 * 0.5 * 1 + 2 * 3.5 * 3) / 6, (2 * 0.5 * 2 + 2 * 3.5 * -1) / 6],
        [(0 + 2 * -2 * 3) / 6, (0 + 2 * -2 * -1) / 6],
        [(2 * 2 * 1 + 2 * 2 * 3) / 6, (2 * 2 * 2 + 2 * 2 * -1) / 6],
    ]
    for got_row, want_row in zip(proj.weight.grad.tolist(), want_w):
        assert got_row == pytest.approx(want_row, rel=1e-6)


def test_hidden_state_loss_equal_widths_use_identity_and_cosine():
    term = HiddenStateLoss(metric="cosine", layers="last")
    term.setup(EncoderShape(2, 2, 1, 4), [EncoderShape(4, 2, 1, 4)])
    assert term.pairs == [(2, 4)]
    assert all(isinstance(p, nn.Identity) for p in term.projections)
    assert list(term.parameters()) == []
    hs = tuple(t64([[[1.0, 0.0]]]) for _ in range(3))
    ht = tuple(t64([[[1.0, 0.0]]]) for _ in range(4)) + (t64([[[0.0, 1.0]]]),)
    got = term(
        ModelOutput(t64([[0.0]]), hidden_states=hs), ModelOutput(t64([[0.0]]), hidden_states=ht), {"inputs": None}
    )
    assert got.item() == pytest.approx(1.0, rel=1e-12)  # cos((1,0),(0,1)) = 0


def test_hidden_state_loss_reads_the_chosen_teacher():
    term = HiddenStateLoss(layers=[[1, 1]], teacher=1)
    term.setup(EncoderShape(1, 2, 1, 4), [EncoderShape(1, 5, 1, 4), EncoderShape(1, 2, 1, 4)])
    assert isinstance(term.projections[0], nn.Identity)  # width of teacher 1, not teacher 0
    s = ModelOutput(t64([[0.0]]), hidden_states=(t64([[[0.0, 0.0]]]), t64([[[1.0, 2.0]]])))
    t0 = ModelOutput(t64([[0.0]]), hidden_states=(t64([[[0.0] * 5]]),) * 2)
    t1 = ModelOutput(t64([[0.0]]), hidden_states=(t64([[[9.0, 9.0]]]), t64([[[1.0, 4.0]]])))
    assert term(s, [t0, t1], {"inputs": None}).item() == pytest.approx(2.0, rel=1e-12)  # (0 + 4) / 2
    assert config_error_key(lambda: HiddenStateLoss(teacher=2).setup(STUDENT_1L, [TEACHER_2L])) == "teacher"


def test_hidden_state_loss_forward_before_setup_raises():
    _, student, teacher = _projected_term()
    with pytest.raises(RuntimeError, match="setup"):
        HiddenStateLoss()(student, teacher, {"inputs": None})


def test_hidden_state_loss_bad_metric_and_token_mismatch():
    assert config_error_key(lambda: HiddenStateLoss(metric="l1")) == "metric"
    assert (
        config_error_key(
            lambda: HiddenStateLoss().setup(EncoderShape(1, 2, 1, 4, tokens=17), [EncoderShape(2, 3, 1, 4, tokens=5)])
        )
        == "layers"
    )
    # tokens known on one side only, or equal, is fine
    HiddenStateLoss().setup(EncoderShape(1, 2, 1, 4, tokens=17), [EncoderShape(2, 3, 1, 4, tokens=17)])
    HiddenStateLoss().setup(EncoderShape(1, 2, 1, 4, tokens=17), [EncoderShape(2, 3, 1, 4)])


# ---------------------------------------------------------------- 6. attention terms


def test_attention_kl_averages_teacher_heads_when_counts_differ():
    student = t64([[[[0.5, 0.5], [0.9, 0.1]]]])  # [1, 1, 2, 2]
    teacher = t64([[[[1.0, 0.0], [0.6, 0.4]], [[0.5, 0.5], [0.2, 0.8]]]])  # [1, 2, 2, 2]
    # head mean of teacher: rows (0.75, 0.25) and (0.4, 0.6)
    row0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    row1 = 0.4 * math.log(0.4 / 0.9) + 0.6 * math.log(0.6 / 0.1)
    assert attention_kl(student, teacher).item() == pytest.approx((row0 + row1) / 2, rel=1e-10)
    # query mask keeps row 0 only
    assert attention_kl(student, teacher, torch.tensor([[True, False]])).item() == pytest.approx(row0, rel=1e-10)


def test_attention_kl_same_heads_compares_head_by_head():
    student = t64([[[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]])
    teacher = t64([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]]])
    # per head: row 0 KL = 1 * ln(1/0.5) = ln 2, row 1 KL = 0 ; mean over 2 heads x 2 rows
    assert attention_kl(student, teacher).item() == pytest.approx(math.log(2) / 2, rel=1e-10)
    # averaging the heads first would give 0 here: they really are compared one to one
    assert attention_kl(student[:, :1], teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_attention_mse_hand_values():
    student = t64([[[[0.5, 0.5], [1.0, 0.0]], [[0.2, 0.8], [0.5, 0.5]]]])
    teacher = t64([[[[0.7, 0.3], [1.0, 0.0]], [[0.2, 0.8], [0.1, 0.9]]]])
    # head 0: rows (.04+.04)/2 = .04, 0 ; head 1: rows 0, (.16+.16)/2 = .16
    # per query (mean over heads): q0 .02, q1 .08 ; mean .05
    assert attention_mse(student, teacher).item() == pytest.approx(0.05, rel=1e-10)
    assert attention_mse(student, teacher, torch.tensor([[False, True]])).item() == pytest.approx(0.08, rel=1e-10)
    # different head counts: student one head = head mean of itself
    one_head = t64([[[[0.35, 0.65], [0.75, 0.25]]]])
    # teacher head mean: (0.45, 0.55), (0.55, 0.45): rows (.01+.01)/2, (.04+.04)/2
    assert attention_mse(one_head, teacher).item() == pytest.approx((0.01 + 0.04) / 2, rel=1e-10)


def test_attention_loss_maps_layers_uniformly():
    term = AttentionLoss(metric="mse", layers="uniform")
    term.setup(EncoderShape(2, 4, 1, 8), [EncoderShape(4, 8, 2, 16)])
    assert term.pairs == [(1, 2), (2, 4)]
    decoy = t64([[[[0.0, 1.0], [1.0, 0.0]]]])
    s1 = t64([[[[0.5, 0.5], [0.5, 0.5]]]])
    s2 = t64([[[[1.0, 0.0], [0.0, 1.0]]]])
    b1 = t64([[[[0.7, 0.3], [0.5, 0.5]]]])  # vs s1: rows .04, 0 -> .02
    b3 = t64([[[[0.5, 0.5], [0.0, 1.0]]]])  # vs s2: rows .25, 0 -> .125
    student = ModelOutput(t64([[0.0]]), attentions=(s1, s2))
    teacher = ModelOutput(t64([[0.0]]), attentions=(decoy, b1, decoy, b3))
    assert term(student, teacher, {"inputs": None}).item() == pytest.approx((0.02 + 0.125) / 2, rel=1e-10)
    assert term.needs == frozenset({"attentions"})


def test_attention_loss_setup_rules():
    with pytest.raises(RuntimeError, match="setup"):
        AttentionLoss()(ModelOutput(t64([[0.0]])), ModelOutput(t64([[0.0]])), {"inputs": None})
    assert (
        config_error_key(
            lambda: AttentionLoss(layers=[[0, 1]]).setup(EncoderShape(2, 4, 1, 8), [EncoderShape(4, 8, 2, 16)])
        )
        == "layers"
    )
    assert config_error_key(lambda: AttentionLoss(metric="cosine")) == "metric"
    assert (
        config_error_key(
            lambda: AttentionLoss().setup(EncoderShape(2, 4, 1, 8, tokens=17), [EncoderShape(4, 8, 2, 16, tokens=5)])
        )
        == "layers"
    )


# ---------------------------------------------------------------- 7. layer_pairs


@pytest.mark.parametrize(
    "spec, ns, nt, want",
    [
        ("uniform", 3, 6, [(1, 2), (2, 4), (3, 6)]),
        ("uniform", 2, 3, [(1, 2), (2, 3)]),  # round(1.5) = 2
        ("uniform", 4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
        ("uniform", 1, 12, [(1, 12)]),
        ("last", 3, 6, [(3, 6)]),
        ([[1, 2], [2, 4]], 3, 6, [(1, 2), (2, 4)]),
        (((3, 6),), 3, 6, [(3, 6)]),
        ([[0, 0], [3, 6]], 3, 6, [(0, 0), (3, 6)]),  # 0 = embeddings, allowed for hidden states
    ],
)
def test_layer_pairs_valid_specs(spec, ns, nt, want):
    assert layer_pairs(spec, ns, nt) == want


@pytest.mark.parametrize(
    "spec",
    ["first", "", 5, None, [], [[4, 1]], [[1, 7]], [[-1, 2]], [[1]], [[1, 2, 3]], [["a", 1]], [1, 2], [[1, None]]],
)
def test_layer_pairs_bad_specs_raise_with_key_layers(spec):
    assert config_error_key(lambda: layer_pairs(spec, 3, 6)) == "layers"


def test_layer_pairs_attention_disallows_embeddings():
    for spec in ([[0, 1]], [[1, 0]]):
        assert config_error_key(lambda spec=spec: layer_pairs(spec, 3, 6, allow_embeddings=False)) == "layers"
    assert layer_pairs([[1, 1]], 3, 6, allow_embeddings=False) == [(1, 1)]


def test_layer_pairs_uniform_never_yields_teacher_layer_0_for_attention():
    pairs = layer_pairs("uniform", 4, 2, allow_embeddings=False)
    assert all(t >= 1 for _, t in pairs), pairs


# ---------------------------------------------------------------- 9. mutual learning

Z0, Z1 = [1.0, 0.0, -1.0], [0.0, 0.5, 0.0]


def test_mutual_loss_total_is_ces_plus_symmetric_kls_at_t1():
    w, y = 0.5, 0
    p0, p1 = softmax_by_hand(Z0), softmax_by_hand(Z1)
    ce0, ce1 = -math.log(p0[y]), -math.log(p1[y])
    kl10, kl01 = kl_by_hand(p1, p0), kl_by_hand(p0, p1)
    result = MutualLoss(temperature=1.0, kl_weight=w)([t64([Z0]), t64([Z1])], {"labels": torch.tensor([y])})
    assert result.total.item() == pytest.approx(ce0 + ce1 + w * (kl10 + kl01), rel=1e-10)
    assert result.parts["ce/0"].item() == pytest.approx(ce0, rel=1e-10)
    assert result.parts["ce/1"].item() == pytest.approx(ce1, rel=1e-10)
    assert result.parts["kl/0"].item() == pytest.approx(kl10, rel=1e-10)
    assert result.parts["kl/1"].item() == pytest.approx(kl01, rel=1e-10)
    assert kl10 != pytest.approx(kl01)  # the KL is not symmetric: the direction matters


def test_mutual_loss_gradient_detaches_peers():
    w, y = 0.5, 0
    z0 = t64([Z0]).requires_grad_()
    z1 = t64([Z1]).requires_grad_()
    MutualLoss(temperature=1.0, kl_weight=w)([z0, z1], {"labels": torch.tensor([y])}).total.backward()
    p0, p1 = softmax_by_hand(Z0), softmax_by_hand(Z1)
    onehot = [1.0 if c == y else 0.0 for c in range(3)]
    # d/dz0 [CE0 + w KL(p1 || p0)] = (p0 - e_y) + w (p0 - p1), with p1 a constant
    want0 = [(a - e) + w * (a - b) for a, e, b in zip(p0, onehot, p1)]
    want1 = [(b - e) + w * (b - a) for a, e, b in zip(p0, onehot, p1)]
    assert z0.grad[0].tolist() == pytest.approx(want0, rel=1e-9, abs=1e-12)
    assert z1.grad[0].tolist() == pytest.approx(want1, rel=1e-9, abs=1e-12)
    # and it equals autograd on the separately written per-model loss
    z0b = t64([Z0]).requires_grad_()
    own = torch.nn.functional.cross_entropy(z0b, torch.tensor([y])) + w * soft_target_kl(z0b, t64([Z1]), 1.0)
    own.backward()
    assert torch.allclose(z0.grad, z0b.grad, atol=1e-12)


def test_mutual_kl_averages_over_peers_and_scales_by_t2():
    Z2 = [2.0, -1.0, 0.0]
    logits = [t64([Z0]), t64([Z1]), t64([Z2])]
    p0, p1, p2 = softmax_by_hand(Z0), softmax_by_hand(Z1), softmax_by_hand(Z2)
    assert mutual_kl(logits, 0, 1.0).item() == pytest.approx((kl_by_hand(p1, p0) + kl_by_hand(p2, p0)) / 2, rel=1e-10)
    T = 2.0
    q0, q1, q2 = (softmax_by_hand(z, T) for z in (Z0, Z1, Z2))
    want = T**2 * (kl_by_hand(q0, q2) + kl_by_hand(q1, q2)) / 2
    assert mutual_kl(logits, 2, T).item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kwargs, key", [({"temperature": 0}, "temperature"), ({"kl_weight": -1}, "kl_weight")])
def test_mutual_loss_invalid_knobs(kwargs, key):
    assert config_error_key(lambda: MutualLoss(**kwargs)) == key


# ---------------------------------------------------------------- 10. composite loss


def test_composite_total_is_weighted_sum_of_hand_parts():
    s = ModelOutput(t64([[math.log(2.0), 0.0, 0.0]]))  # q = (.5, .25, .25)
    t = ModelOutput(t64([[math.log(6.0), math.log(3.0), 0.0]]))  # p = (.6, .3, .1)
    kd = kl_by_hand([0.6, 0.3, 0.1], [0.5, 0.25, 0.25])
    d = [math.log(2.0) - math.log(6.0), -math.log(3.0), 0.0]
    mse = sum(v * v for v in d) / 3
    loss = CompositeLoss({"kd": SoftTargetKL(temperature=1.0), "mse": LogitMSE()}, {"kd": 0.5, "mse": 2.0})
    result = loss(s, t, {})
    assert result.parts["kd"].item() == pytest.approx(kd, rel=1e-9)
    assert result.parts["mse"].item() == pytest.approx(mse, rel=1e-9)
    assert result.total.item() == pytest.approx(0.5 * kd + 2.0 * mse, rel=1e-9)


def test_composite_needs_is_union_of_terms():
    assert HintonKD().needs == frozenset()
    hidden = CompositeLoss({"kd": SoftTargetKL(), "hidden": HiddenStateLoss()}, {"kd": 1.0, "hidden": 1.0})
    assert hidden.needs == frozenset({"hidden_states"})
    both = CompositeLoss({"h": HiddenStateLoss(), "a": AttentionLoss()}, {"h": 1.0, "a": 1.0})
    assert both.needs == frozenset({"hidden_states", "attentions"})


def test_composite_rejects_mismatched_names_and_bad_weights():
    with pytest.raises(ValueError):
        CompositeLoss({"kd": SoftTargetKL()}, {"ce": 1.0})
    with pytest.raises(ValueError):
        CompositeLoss({"kd": SoftTargetKL()}, {"kd": 1.0, "ce": 1.0})
    assert config_error_key(lambda: CompositeLoss({"kd": SoftTargetKL()}, {"kd": -1.0})) == "weights.kd"


def test_composite_setup_prefixes_term_config_errors_and_registers_projections():
    loss = CompositeLoss({"kd": SoftTargetKL(), "hidden": HiddenStateLoss(layers=[[5, 1]])}, {"kd": 1.0, "hidden": 1.0})
    assert config_error_key(lambda: loss.setup(STUDENT_1L, [TEACHER_2L])) == "terms.hidden.layers"
    assert (
        config_error_key(
            lambda: CompositeLoss({"att": AttentionLoss(teacher=3)}, {"att": 1.0}).setup(STUDENT_1L, [TEACHER_2L])
        )
        == "terms.att.teacher"
    )
    ok = CompositeLoss({"kd": SoftTargetKL(), "hidden": HiddenStateLoss()}, {"kd": 1.0, "hidden": 1.0})
    assert list(ok.parameters()) == []
    ok.setup(STUDENT_1L, [TEACHER_2L])
    # the new projection (2 -> 3: 6 weights + 3 biases) is a parameter of the loss
    assert sum(p.numel() for p in ok.parameters()) == 9
