"""Seeded, class-stratified samples: validation splits and ``max_train_samples`` subsets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from distillab.core.config import ConfigError


def stratified_pick(key: str, value: Any, labels: Tensor | np.ndarray, size: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (in order) of a stratified sample of ``size`` (a count or a fraction) and of the
    rest; ``key``/``value`` name the knob that asked for it when it cannot be drawn."""
    labels = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    idx = np.arange(len(labels))
    classes = len(np.unique(labels))
    whole = isinstance(size, (int, np.integer))
    count = size if whole else math.floor(size * len(idx))  # as scikit-learn counts it
    if count < classes:
        least = classes if whole else _round_up(classes / len(idx))
        raise ConfigError(
            key,
            value,
            f"keeps {count} of {len(idx)} samples, fewer than the {classes} classes: a "
            f"stratified sample needs one of each (at least {least})",
        )
    if count < len(idx) and len(idx) - count < classes:
        most = len(idx) - classes if whole else round(1 - _round_up(classes / len(idx)), 10)
        raise ConfigError(
            key,
            value,
            f"leaves {len(idx) - count} of {len(idx)} samples out, fewer than the "
            f"{classes} classes: a stratified split needs one of each on both sides (at most {most})",
        )
    try:
        picked, rest = train_test_split(idx, train_size=size, random_state=seed, stratify=labels)
    except ValueError as err:  # e.g. a class with a single sample, or fewer samples than classes
        raise ConfigError(key, value, f"cannot draw a stratified sample of {size} from {len(idx)}: {err}") from None
    return torch.from_numpy(np.sort(picked)), torch.from_numpy(np.sort(rest))


def _round_up(fraction: float) -> float:
    """``fraction`` rounded up to two significant digits (0.0079554 -> 0.008)."""
    scale = 10 ** (1 - math.floor(math.log10(fraction)))
    return math.ceil(round(fraction * scale, 6)) / scale
