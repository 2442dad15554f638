"""Adversarial training and ARD (losses/adversarial.py): values by hand, config errors, a training step."""

import lightning as L
import pytest
import torch

from distillab.core.config import ConfigError
from distillab.losses import AdversarialLoss, CrossEntropy, OnPerturbed, SoftTargetKL
from distillab.models.output import ModelOutput
from distillab.modules import ClassifierModule, DistillationModule
from distillab.robustness import Attack
from distillab.teachers import FrozenTeacher

PGD = Attack("pgd", eps=0.1, steps=2, step_size=0.05)


def ard(alpha: float, temperature: float) -> AdversarialLoss:
    return AdversarialLoss(
        {"ce": CrossEntropy(), "kd_adv": OnPerturbed(SoftTargetKL(temperature))},
        {"ce": alpha, "kd_adv": 1 - alpha},
        PGD,
    )


def test_ard_by_hand():
    # alpha*CE(S(x), y) + (1-alpha)*T^2*KL(softmax(t/T) || softmax(s_adv/T)), the teacher on clean x.
    s, s_adv, t = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.5, 1.0, 0.0]]), torch.tensor([[3.0, 1.0, 0.0]])
    y, T, alpha = torch.tensor([0]), 2.0, 0.3
    log_softmax = lambda z: z - torch.logsumexp(z, -1, keepdim=True)  # noqa: E731
    ce = -log_softmax(s)[0, 0]
    p, log_q = log_softmax(t / T).exp(), log_softmax(s_adv / T)
    kl = (p * (p.log() - log_q)).sum()
    expected = alpha * ce + (1 - alpha) * T**2 * kl
    batch = {"labels": y, "perturbed_out": ModelOutput(s_adv)}
    result = ard(alpha, T)(ModelOutput(s), ModelOutput(t), batch)
    torch.testing.assert_close(result.total, expected)
    torch.testing.assert_close(result.parts["kd_adv"], T**2 * kl)


def test_adversarial_loss_needs_an_attack_and_a_perturbed_term():
    with pytest.raises(ConfigError, match="needs an attack"):
        AdversarialLoss({"ce": CrossEntropy(), "adv": OnPerturbed(CrossEntropy())}, {"ce": 0.5, "adv": 0.5}, None)
    with pytest.raises(ConfigError, match="no term on perturbed inputs"):
        AdversarialLoss({"ce": CrossEntropy()}, {"ce": 1.0}, PGD)


def test_adversarial_training_steps_log_the_perturbed_terms(digits, tiny_vit):
    def fit(module: L.LightningModule) -> dict:
        trainer = L.Trainer(
            accelerator="cpu", fast_dev_run=True, logger=False, enable_progress_bar=False, enable_model_summary=False
        )
        trainer.fit(module, datamodule=digits)
        return trainer.logged_metrics

    student = tiny_vit(hidden_size=16)
    madry = fit(ClassifierModule(student, digits.num_classes, attack=PGD, adversarial_weight=0.5))
    assert {"train/loss/ce", "train/loss/ce_adv"} <= set(madry)
    assert madry["train/loss/ce_adv"] > madry["train/loss/ce"], "the attack raises the loss it attacks"
    logged = fit(
        DistillationModule(tiny_vit(hidden_size=16), FrozenTeacher(tiny_vit()), ard(0.1, 4.0), digits.num_classes)
    )
    assert {"train/loss/ce", "train/loss/kd_adv"} <= set(logged)
