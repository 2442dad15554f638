"""A model rebuilt from its run's config and filled from a Lightning checkpoint of the run.

What ``distillab-export`` does after the fact. The checkpoint holds the model's weights under
its LightningModule's prefix (``model.`` for a classifier or distillation module; ``peers.1.``
for the student of a mutual run) and, under gradual pruning, ``weight_orig``/``weight_mask``
pairs. A structurally pruned student (heads, FFN neurons) has smaller Linear layers than its
config builds: each such Linear is replaced by one of the checkpoint's shape first.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from distillab.core.config import ConfigError
from distillab.pruning.magnitude import restore_masks

KEY = "checkpoint"
PREFIXES = {"mutual": "peers.1."}  # by role; every other module keeps its model under "model."


def checkpoint_state(path: Path, role: str) -> dict[str, Tensor]:
    """The model's weights in the Lightning checkpoint ``path`` of ``role`` (read with
    ``weights_only=True``: a checkpoint runs no code)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(KEY, str(path), f"is not a readable Lightning checkpoint ({type(err).__name__})") from None
    prefix = PREFIXES.get(role, "model.")
    state = {k[len(prefix) :]: v for k, v in (checkpoint.get("state_dict") or {}).items() if k.startswith(prefix)}
    if not state:
        raise ConfigError(KEY, str(path), f"holds no weights under {prefix!r} (not a checkpoint of a distillab {role})")
    return state


def fit_linear_shapes(model: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Replace every Linear whose weight in ``state`` has another shape (sliced by structured
    pruning) by a Linear of that shape; returns the names replaced."""
    replaced = []
    for name, module in list(model.named_modules()):
        weight = state.get(f"{name}.weight", state.get(f"{name}.weight_orig"))
        if not isinstance(module, nn.Linear) or weight is None or weight.shape == module.weight.shape:
            continue
        out_features, in_features = weight.shape
        new = nn.Linear(in_features, out_features, bias=module.bias is not None, dtype=module.weight.dtype)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
        replaced.append(name)
    return replaced


def load_checkpoint_into(model: nn.Module, state: dict[str, Tensor], path: Path) -> list[str]:
    """Fill ``model`` from ``state`` (its pruned shapes and masks first), strictly: a weight that
    does not fit is a ConfigError naming the checkpoint. Returns the Linear layers resized."""
    replaced = fit_linear_shapes(model, state)
    restore_masks(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ConfigError(
            KEY,
            str(path),
            f"does not fit the model its run's config builds: {lines[1] if len(lines) > 1 else lines[0]}",
        ) from None
    return replaced
