"""Loss terms (LossTerm): ``forward(student_out, teacher_out, batch) -> Tensor``, summed by CompositeLoss."""

from distillab.losses.adversarial import AdversarialLoss, OnPerturbed
from distillab.losses.composite import CompositeLoss, LossResult
from distillab.losses.dkd import DKD, dkd_parts
from distillab.losses.features import (
    AttentionLoss,
    HiddenStateLoss,
    attention_kl,
    attention_mse,
    hidden_cosine,
    hidden_mse,
)
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
from distillab.losses.term import LossTerm
from distillab.losses.token import TokenDivergence
from distillab.losses.token_divergences import (
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    token_divergence,
    total_variation,
)
from distillab.losses.topk import TopK, topk_of

__all__ = [
    "DKD",
    "AdversarialLoss",
    "AttentionLoss",
    "CompositeLoss",
    "CrossEntropy",
    "HiddenStateLoss",
    "HintonKD",
    "LogitMSE",
    "LossResult",
    "LossTerm",
    "MutualLoss",
    "OnPerturbed",
    "SoftTargetCE",
    "SoftTargetKL",
    "TokenDivergence",
    "TopK",
    "attention_kl",
    "attention_mse",
    "cross_entropy",
    "dkd_parts",
    "forward_kl",
    "generalized_jsd",
    "hidden_cosine",
    "hidden_mse",
    "logit_mse",
    "mutual_kl",
    "reverse_kl",
    "skew_kl",
    "skew_reverse_kl",
    "soft_target_ce",
    "soft_target_kl",
    "token_divergence",
    "topk_of",
    "total_variation",
]
