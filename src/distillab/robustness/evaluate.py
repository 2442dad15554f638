"""Robust accuracy: a classifier's accuracy on clean inputs and under each attack."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from distillab.core.config import ConfigError
from distillab.data.batch import Batch
from distillab.losses.kd import cross_entropy
from distillab.models.output import ModelOutput
from distillab.robustness.attacks import Attack, perturb


def _to(batch: Batch, device: torch.device) -> Batch:
    inputs = batch["inputs"]
    inputs = {k: v.to(device) for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.to(device)
    return {**batch, "inputs": inputs, "labels": batch["labels"].to(device)}


def robust_accuracy(
    model: nn.Module,
    dataloader: Iterable[Batch],
    attacks: Sequence[Attack],
    lo: float | None = 0.0,
    hi: float | None = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy on the clean inputs (``"clean"``) and under each attack (``attack.key``, e.g.
    ``"fgsm@0.1"``, ``"pgd@0.1"``), over every batch of ``dataloader``.

    Each attack maximises the model's cross-entropy on the true labels (untargeted), batch by
    batch on the model's device; image inputs stay in [lo, hi], token inputs are attacked in
    embedding space (see :func:`distillab.robustness.perturb`). The model is put in eval mode
    for the evaluation and given back in the mode it had. The random starts come from one CPU
    generator seeded with ``seed``: the same seed and data order give the same numbers (on a
    GPU, up to its kernels' own non-determinism). Attacks must have distinct keys.
    """
    keys = [a.key for a in attacks]
    if "clean" in keys or len(set(keys)) != len(keys):
        raise ConfigError("attacks", keys, "each attack needs its own name@eps (two attacks give the same key)")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    correct = {k: torch.zeros((), dtype=torch.long, device=device) for k in ["clean", *keys]}
    total = 0
    was_training = model.training
    model.eval()
    try:
        for batch in dataloader:
            batch = _to(batch, device)
            labels = batch["labels"]
            with torch.no_grad():
                correct["clean"] += _hits(model(batch["inputs"]).logits, labels)
            loss_fn = _ce_on(labels)
            for attack in attacks:
                adv = perturb(model, batch, loss_fn, attack, lo, hi, generator)
                with torch.no_grad():
                    correct[attack.key] += _hits(adv(model).logits, labels)
            total += len(labels)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("robust_accuracy: the data loader gave no batch")
    return {k: c.item() / total for k, c in correct.items()}


def _ce_on(labels: Tensor) -> Callable[[ModelOutput], Tensor]:
    return lambda out: cross_entropy(out.logits, labels)


def _hits(logits: Tensor, labels: Tensor) -> Tensor:
    return (logits.argmax(-1) == labels).sum()
