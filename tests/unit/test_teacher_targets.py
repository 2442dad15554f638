"""Several teachers: which one a term reads, and how their soft targets combine
(mean, weighted, confidence), against distributions mixed by hand."""

import math

import pytest
import torch
from hand import entropy_by_hand, kl_by_hand, softmax_by_hand

from distillab.core.config import ConfigError
from distillab.losses import DKD, LogitMSE, SoftTargetKL, soft_target_kl
from distillab.models.output import ModelOutput

F64 = torch.float64


def out(*rows: list[float]) -> ModelOutput:
    return ModelOutput(torch.tensor(list(rows), dtype=F64))


# teacher 1: p1 = (.6, .3, .1) ; teacher 2: p2 = (.25, .25, .5) ; student q = (.5, .25, .25), all at T = 1
T1 = [math.log(6.0), math.log(3.0), 0.0]
T2 = [0.0, 0.0, math.log(2.0)]
S = [math.log(2.0), 0.0, 0.0]
P1, P2, Q = [0.6, 0.3, 0.1], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]


def test_hand_distributions_are_what_the_logits_say():
    assert softmax_by_hand(T1) == pytest.approx(P1)
    assert softmax_by_hand(T2) == pytest.approx(P2)
    assert softmax_by_hand(S) == pytest.approx(Q)


def test_mean_combines_probabilities_not_logits():
    term = SoftTargetKL(temperature=1.0)
    mixture = [0.425, 0.275, 0.3]  # (p1 + p2) / 2
    target = term.log_probs([out(T1), out(T2)], 1.0).exp()[0].tolist()
    assert target == pytest.approx(mixture, rel=1e-6)
    got = term(out(S), [out(T1), out(T2)], {}).item()
    assert got == pytest.approx(kl_by_hand(mixture, Q), rel=1e-9)
    # the softmax of the mean logits is a different distribution
    assert kl_by_hand(softmax_by_hand([(a + b) / 2 for a, b in zip(T1, T2)]), Q) != pytest.approx(got, rel=1e-3)


def test_mean_at_temperature_2():
    T = 2.0
    p1, p2, q = softmax_by_hand(T1, T), softmax_by_hand(T2, T), softmax_by_hand(S, T)
    mixture = [(a + b) / 2 for a, b in zip(p1, p2)]
    got = SoftTargetKL(temperature=T)(out(S), [out(T1), out(T2)], {}).item()
    assert got == pytest.approx(T**2 * kl_by_hand(mixture, q), rel=1e-6)


def test_weighted_mixture_uses_normalised_weights():
    term = SoftTargetKL(temperature=1.0, combine="weighted", teacher_weights=[3, 1])
    assert term.teacher_weights == pytest.approx([0.75, 0.25])
    mixture = [0.75 * a + 0.25 * b for a, b in zip(P1, P2)]  # (.5125, .2875, .2)
    assert mixture == pytest.approx([0.5125, 0.2875, 0.2])
    assert term.log_probs([out(T1), out(T2)], 1.0).exp()[0].tolist() == pytest.approx(mixture, rel=1e-6)
    assert term(out(S), [out(T1), out(T2)], {}).item() == pytest.approx(kl_by_hand(mixture, Q), rel=1e-9)
    # a zero weight drops that teacher entirely
    only_first = SoftTargetKL(temperature=1.0, combine="weighted", teacher_weights=[1, 0])
    assert only_first(out(S), [out(T1), out(T2)], {}).item() == pytest.approx(kl_by_hand(P1, Q), rel=1e-6)


def test_confidence_weights_are_softmax_of_minus_entropy_per_sample():
    confident, flat = [math.log(8.0), 0.0, 0.0], [0.0, 0.0, 0.0]  # (.8, .1, .1) and uniform
    pc, pf = [0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3]
    hc, hf = entropy_by_hand(pc), math.log(3)
    wc = math.exp(-hc) / (math.exp(-hc) + math.exp(-hf))
    assert wc > 0.5
    want = [wc * a + (1 - wc) * b for a, b in zip(pc, pf)]
    term = SoftTargetKL(temperature=1.0, combine="confidence")
    # sample 0: teacher 1 is the confident one; sample 1: roles swapped -> same target
    teachers = [out(confident, flat), out(flat, confident)]
    target = term.log_probs(teachers, 1.0).exp().tolist()
    assert target[0] == pytest.approx(want, rel=1e-6)
    assert target[1] == pytest.approx(want, rel=1e-6)
    # the plain mean would have given a different, flatter target
    mean_target = [(a + b) / 2 for a, b in zip(pc, pf)]
    assert target[0][0] > mean_target[0] + 0.01
    got = term(out(S, S), teachers, {}).item()
    assert got == pytest.approx(kl_by_hand(want, Q), rel=1e-6)


def test_confidence_entropy_is_taken_at_the_temperature():
    T = 3.0
    confident, flat = [math.log(8.0), 0.0, 0.0], [0.5, 0.0, 0.0]
    pc, pf = softmax_by_hand(confident, T), softmax_by_hand(flat, T)
    hc, hf = entropy_by_hand(pc), entropy_by_hand(pf)
    wc = math.exp(-hc) / (math.exp(-hc) + math.exp(-hf))
    want = [wc * a + (1 - wc) * b for a, b in zip(pc, pf)]
    target = SoftTargetKL(temperature=T, combine="confidence").log_probs([out(confident), out(flat)], T).exp()
    assert target[0].tolist() == pytest.approx(want, rel=1e-6)


def test_teacher_index_reads_one_teacher_only():
    term = SoftTargetKL(temperature=1.0, teacher=1)
    assert term(out(S), [out(T1), out(T2)], {}).item() == pytest.approx(kl_by_hand(P2, Q), rel=1e-9)
    assert term.log_probs([out(T1), out(T2)], 1.0).exp()[0].tolist() == pytest.approx(P2, rel=1e-9)
    first = SoftTargetKL(temperature=1.0, teacher=0)
    assert first(out(S), [out(T1), out(T2)], {}).item() == pytest.approx(kl_by_hand(P1, Q), rel=1e-9)
    # a single ModelOutput is teacher 0
    assert first(out(S), out(T1), {}).item() == pytest.approx(kl_by_hand(P1, Q), rel=1e-9)


def test_teacher_index_out_of_range_raises_at_forward():
    term = SoftTargetKL(temperature=1.0, teacher=2)
    with pytest.raises(ConfigError) as err:
        term(out(S), [out(T1), out(T2)], {})
    assert err.value.key == "teacher"
    with pytest.raises(ConfigError) as err:
        SoftTargetKL(temperature=1.0, teacher=1)(out(S), out(T1), {})
    assert err.value.key == "teacher"


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"combine": "max"}, "combine"),
        ({"combine": "weighted"}, "teacher_weights"),
        ({"combine": "weighted", "teacher_weights": []}, "teacher_weights"),
        ({"combine": "weighted", "teacher_weights": [0, 0]}, "teacher_weights"),
        ({"combine": "weighted", "teacher_weights": [-1, 2]}, "teacher_weights[0]"),
        ({"combine": "weighted", "teacher_weights": [1, "x"]}, "teacher_weights[1]"),
        ({"teacher": -1}, "teacher"),
        ({"teacher": 1.5}, "teacher"),
        ({"teacher": True}, "teacher"),
    ],
)
def test_invalid_teacher_choice_names_the_key(kwargs, key):
    for cls in (SoftTargetKL, LogitMSE, DKD):
        with pytest.raises(ConfigError) as err:
            cls(**kwargs)
        assert err.value.key == key


def test_weight_count_must_match_teacher_count():
    term = SoftTargetKL(temperature=1.0, combine="weighted", teacher_weights=[1, 1, 1])
    with pytest.raises(ConfigError) as err:
        term(out(S), [out(T1), out(T2)], {})
    assert err.value.key == "teacher_weights"


def test_single_teacher_ignores_combine():
    for combine, weights in (("mean", None), ("confidence", None)):
        term = SoftTargetKL(temperature=2.0, combine=combine, teacher_weights=weights)
        got = term(out(S), [out(T1)], {}).item()
        ref = soft_target_kl(torch.tensor([S], dtype=F64), torch.tensor([T1], dtype=F64), 2.0).item()
        assert got == pytest.approx(ref, rel=1e-12)
        assert got == pytest.approx(4.0 * kl_by_hand(softmax_by_hand(T1, 2.0), softmax_by_hand(S, 2.0)), rel=1e-9)


def test_soft_target_kl_with_a_class_the_teacher_rules_out_is_finite():
    s = torch.zeros(1, 3, dtype=F64)
    t = torch.tensor([[0.0, 0.0, float("-inf")]], dtype=F64)
    # p = (.5, .5, 0), q = uniform: KL = ln(3/2)
    assert soft_target_kl(s, t, 1.0).item() == pytest.approx(math.log(1.5), rel=1e-9)
