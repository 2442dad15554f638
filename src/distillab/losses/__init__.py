"""Loss terms: ``forward(student_out, teacher_out, batch) -> Tensor``, summed by CompositeLoss."""

from distillab.losses.adversarial import AdversarialLoss, OnPerturbed
from distillab.losses.composite import CompositeLoss, LossResult
from distillab.losses.dkd import DKD, dkd_parts
from distillab.losses.features import AttentionLoss, HiddenStateLoss, attention_kl, attention_mse, hidden_cosine, hidden_mse
from distillab.losses.kd import (
    CrossEntropy,
    HintonKD,
    LogitMSE,
    SoftTargetCE,
    SoftTargetKL,
    cross_entropy,
    logit_mse,
    soft_target_ce,
    soft_target_kl,
)
from distillab.losses.mutual import MutualLoss, mutual_kl

__all__ = [
    "AdversarialLoss", "AttentionLoss", "CompositeLoss", "OnPerturbed", "CrossEntropy", "DKD", "HiddenStateLoss", "HintonKD", "LogitMSE",
    "LossResult", "MutualLoss", "SoftTargetCE", "SoftTargetKL", "attention_kl", "attention_mse", "cross_entropy",
    "dkd_parts", "hidden_cosine", "hidden_mse", "logit_mse", "mutual_kl", "soft_target_ce", "soft_target_kl",
]
