"""Pruning steps that a config builds (``conf/pruning/*.yaml``) and the pipeline runs after
training: ``step(model, batches) -> what was pruned``.

Each step names its ``target`` (``student`` or ``teacher``) and how many
``recovery_epochs`` of distillation follow it. Gradual pruning during training is the
:class:`~distillab.pruning.schedule.GradualPruning` callback instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from distillab.core.config import check_choice, check_int, check_number
from distillab.pruning.magnitude import (
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    magnitude_prune,
    named_prunable_weights,
    threshold_prune,
)
from distillab.pruning.structured import head_importance, prune_heads, prune_neurons

TARGETS = ("student", "teacher")


class PruningStep:
    def __init__(self, target: str = "student", recovery_epochs: int = 0):
        self.target = check_choice("target", target, TARGETS)
        self.recovery_epochs = check_int("recovery_epochs", recovery_epochs, low=0)

    def __call__(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError


class MagnitudePruning(PruningStep):
    """Zero the ``amount`` fraction of smallest-|w| weights, over all selected tensors
    (``scope=global``) or in each (``scope=layer``). See magnitude.py."""

    def __init__(
        self,
        amount: float = 0.8,
        scope: str = "global",
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        target: str = "student",
        recovery_epochs: int = 0,
    ):
        super().__init__(target, recovery_epochs)
        self.amount = check_number("amount", amount, low=0, high=1, high_open=True)
        self.scope = check_choice("scope", scope, ("global", "layer"))
        self.include, self.exclude = tuple(include), tuple(exclude)

    def __call__(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
        report = magnitude_prune(named_prunable_weights(model, self.include, self.exclude), self.amount, self.scope)
        return {"method": "magnitude", "amount": self.amount, "sparsity": report.sparsity}


class ThresholdPruning(PruningStep):
    """Zero every selected weight with |w| < ``threshold``."""

    def __init__(
        self,
        threshold: float = 0.01,
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        target: str = "student",
        recovery_epochs: int = 0,
    ):
        super().__init__(target, recovery_epochs)
        self.threshold = check_number("threshold", threshold, low=0)
        self.include, self.exclude = tuple(include), tuple(exclude)

    def __call__(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
        report = threshold_prune(named_prunable_weights(model, self.include, self.exclude), self.threshold)
        return {"method": "threshold", "threshold": self.threshold, "sparsity": report.sparsity}


class HeadPruning(PruningStep):
    """Remove the ``fraction`` least important attention heads (Michel et al. 2019 gradient
    importance on validation batches, or weight norm). See structured.py."""

    def __init__(
        self,
        fraction: float = 0.5,
        importance: str = "gradient",
        batches: int = 4,
        target: str = "student",
        recovery_epochs: int = 0,
    ):
        super().__init__(target, recovery_epochs)
        self.fraction = check_number("fraction", fraction, low=0, high=1, high_open=True)
        self.importance = check_choice("importance", importance, ("gradient", "weight_norm"))
        self.batches = check_int("batches", batches, low=1)

    def __call__(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
        chosen = [b for _, b in zip(range(self.batches), batches)]
        scores = head_importance(model, chosen, method=self.importance)
        removed = prune_heads(model, scores, self.fraction)
        return {"method": "heads", "fraction": self.fraction, "removed": {str(k): v for k, v in removed.items()}}


class NeuronPruning(PruningStep):
    """Remove the ``fraction`` of FFN intermediate neurons with the smallest weight norms."""

    def __init__(self, fraction: float = 0.5, target: str = "student", recovery_epochs: int = 0):
        super().__init__(target, recovery_epochs)
        self.fraction = check_number("fraction", fraction, low=0, high=1, high_open=True)

    def __call__(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
        removed = prune_neurons(model, self.fraction)
        return {"method": "neurons", "fraction": self.fraction, "removed": {str(k): v for k, v in removed.items()}}
