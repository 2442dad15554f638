"""Seeded, class-stratified samples: validation splits and ``max_train_samples`` subsets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from distillab.config import ConfigError


def stratified_pick(key: str, value: Any, labels: Tensor | np.ndarray, size: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (in order) of a stratified sample of ``size`` (a count or a fraction) and of the
    rest; ``key``/``value`` name the knob that asked for it when it cannot be drawn."""
    labels = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    idx = np.arange(len(labels))
    try:
        picked, rest = train_test_split(idx, train_size=size, random_state=seed, stratify=labels)
    except ValueError as err:  # e.g. a class with a single sample, or fewer samples than classes
        raise ConfigError(key, value, f"cannot draw a stratified sample of {size} from {len(idx)}: {err}") from None
    return torch.from_numpy(np.sort(picked)), torch.from_numpy(np.sort(rest))
