"""Adversarial robustness: attacks (FGSM, PGD; PGD on token embeddings) and robust accuracy."""

from distillab.robustness.attacks import (
    Attack,
    Perturbed,
    embedding_attack,
    embedding_delta,
    fgsm,
    input_embeddings,
    perturb,
    pgd,
)
from distillab.robustness.evaluate import robust_accuracy

__all__ = [
    "Attack",
    "Perturbed",
    "embedding_attack",
    "embedding_delta",
    "fgsm",
    "input_embeddings",
    "perturb",
    "pgd",
    "robust_accuracy",
]
