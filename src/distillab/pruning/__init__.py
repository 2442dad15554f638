"""Pruning: unstructured magnitude masks (magnitude.py), their gradual schedule during
training (schedule.py) and structured removal of heads and FFN neurons (structured.py)."""

from distillab.pruning.magnitude import (
    PruneReport,
    magnitude_prune,
    make_permanent,
    measured_sparsity,
    named_prunable_weights,
    prunable_weights,
    restore_masks,
    threshold_prune,
)
from distillab.pruning.schedule import GradualPruning, cubic_sparsity
from distillab.pruning.structured import (
    head_importance,
    neuron_importance,
    prune_heads,
    prune_neurons,
)

__all__ = [
    "GradualPruning",
    "PruneReport",
    "cubic_sparsity",
    "head_importance",
    "magnitude_prune",
    "make_permanent",
    "measured_sparsity",
    "named_prunable_weights",
    "neuron_importance",
    "prunable_weights",
    "prune_heads",
    "prune_neurons",
    "restore_masks",
    "threshold_prune",
]
