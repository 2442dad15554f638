"""Hinton KD and cross-entropy against values computed by hand."""

import math

import pytest
import torch
from hand import kl_by_hand, softmax_by_hand

from distillab.core.config import ConfigError
from distillab.losses import HintonKD, cross_entropy, soft_target_kl
from distillab.models.output import ModelOutput


def test_soft_target_kl_at_t1_matches_hand_value():
    # teacher p = (0.75, 0.25), student q = (0.5, 0.5): KL = .75 ln 1.5 + .25 ln .5 = 0.130812
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    assert soft_target_kl(s, t, 1.0).item() == pytest.approx(0.1308120, abs=1e-6)


@pytest.mark.parametrize("T", [0.5, 2.0, 4.0, 20.0])
def test_soft_target_kl_scales_by_t_squared(T):
    s, t = [1.0, -0.5, 0.2], [2.0, 0.0, -1.0]
    expected = T**2 * kl_by_hand(softmax_by_hand(t, T), softmax_by_hand(s, T))
    got = soft_target_kl(torch.tensor([s], dtype=torch.float64), torch.tensor([t], dtype=torch.float64), T).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_soft_target_kl_is_zero_for_identical_logits_and_averages_over_batch():
    z = torch.randn(5, 7)
    assert soft_target_kl(z, z.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)
    s, t = torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert soft_target_kl(s, t, 1.0).item() == pytest.approx(0.1308120 / 2, abs=1e-6)


def test_cross_entropy_hand_value_and_sequence_mask():
    assert cross_entropy(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.log(2))
    # [batch, seq, vocab]: the masked position has a huge loss that must not count.
    logits = torch.zeros(1, 2, 4)
    logits[0, 1, 0] = -100.0
    labels = torch.tensor([[1, 0]])
    mask = torch.tensor([[True, False]])
    assert cross_entropy(logits, labels, mask).item() == pytest.approx(math.log(4), rel=1e-6)
    s = torch.zeros(1, 2, 2)
    t = torch.tensor([[[math.log(3.0), 0.0], [50.0, -50.0]]])
    assert soft_target_kl(s, t, 1.0, mask).item() == pytest.approx(0.1308120, abs=1e-6)


def _outputs():
    s = ModelOutput(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    t = ModelOutput(torch.tensor([[math.log(3.0), 0.0], [0.0, 2.0]]))
    batch = {"labels": torch.tensor([0, 1])}
    return s, t, batch


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_hinton_kd_is_the_alpha_mix_of_kd_and_ce(alpha):
    s, t, batch = _outputs()
    T = 2.0
    result = HintonKD(temperature=T, alpha=alpha)(s, t, batch)
    kd = soft_target_kl(s.logits, t.logits, T)
    ce = cross_entropy(s.logits, batch["labels"])
    assert result.parts["kd"].item() == pytest.approx(kd.item())
    assert result.parts["ce"].item() == pytest.approx(ce.item())
    assert result.total.item() == pytest.approx(alpha * kd.item() + (1 - alpha) * ce.item(), rel=1e-6)


def test_hinton_kd_alpha_one_ignores_labels_and_alpha_zero_ignores_teacher():
    s, t, batch = _outputs()
    other_labels = {"labels": torch.tensor([1, 0])}
    kd_only = HintonKD(temperature=4.0, alpha=1.0)
    assert kd_only(s, t, batch).total.item() == pytest.approx(kd_only(s, t, other_labels).total.item())
    ce_only = HintonKD(temperature=4.0, alpha=0.0)
    other_teacher = ModelOutput(-t.logits)
    assert ce_only(s, t, batch).total.item() == pytest.approx(ce_only(s, other_teacher, batch).total.item())


def test_gradient_flows_to_student_only():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    HintonKD(2.0, 0.5)(ModelOutput(s), ModelOutput(t.detach()), {"labels": torch.tensor([0, 1, 2, 0])}).total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": "abc"}, "alpha"),
        ({"alpha": True}, "alpha"),
    ],
)
def test_invalid_knobs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        HintonKD(**kwargs)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")
