"""Unstructured pruning: zero single weights, kept as ``torch.nn.utils.prune`` masks.

A pruned tensor ``weight`` becomes ``weight_orig`` (trained) times ``weight_mask`` (a
buffer), so training can go on with the zeros held in place; :func:`make_permanent` turns
it back into a plain ``weight`` with the zeros in it, before saving or export.

Sparsity is always reported as the fraction of exact zeros in the effective weights
(``orig * mask``): real zeros, not intended ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from distillab.core.config import check_choice, check_number

# transformers 5 ViT keeps its blocks in ``vit.layers`` (no ``encoder`` module), BERT in
# ``bert.encoder.layer``: matching both keeps the default "encoder blocks only" for either.
DEFAULT_INCLUDE = ("encoder", "layers")
DEFAULT_EXCLUDE = ("embeddings", "classifier", "pooler")

Params = Sequence[tuple[nn.Module, str]] | Mapping[str, tuple[nn.Module, str]]


@dataclass(frozen=True)
class PruneReport:
    """Measured sparsity over all the given tensors, and per tensor (by qualified name)."""

    sparsity: float
    per_tensor: dict[str, float]


def named_prunable_weights(
    model: nn.Module,
    include: Sequence[str] = DEFAULT_INCLUDE,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> dict[str, tuple[nn.Module, str]]:
    """``{"<module name>.weight": (linear, "weight")}`` for Linear modules whose qualified name
    contains one of ``include`` and none of ``exclude``.

    Embeddings and the classifier are left out by default: they are small next to the
    encoder and pruning them costs far more accuracy per weight removed.
    """
    return {
        f"{name}.weight": (module, "weight")
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and any(part in name for part in include)
        and not any(part in name for part in exclude)
    }


def prunable_weights(
    model: nn.Module,
    include: Sequence[str] = DEFAULT_INCLUDE,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> list[tuple[nn.Module, str]]:
    """The ``(linear, "weight")`` pairs of :func:`named_prunable_weights`, in model order."""
    return list(named_prunable_weights(model, include, exclude).values())


def _named(params: Params) -> dict[str, tuple[nn.Module, str]]:
    if isinstance(params, Mapping):
        return dict(params)
    return {f"[{i}].{name}": (module, name) for i, (module, name) in enumerate(params)}


def _effective(module: nn.Module, name: str) -> Tensor:
    """The weight the next forward will use. Recomputed from ``orig * mask`` because the
    ``weight`` attribute of a pruned module is refreshed only at forward time and is one
    optimizer step stale inside a training loop."""
    if hasattr(module, f"{name}_orig"):
        return (getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")).detach()
    return getattr(module, name).detach()


def _masked_count(module: nn.Module, name: str) -> int:
    mask = getattr(module, f"{name}_mask", None)
    return 0 if mask is None else int((mask == 0).sum())


def measured_sparsity(params: Params) -> float:
    """Fraction of exact zeros over all the given tensors' effective weights."""
    tensors = [_effective(m, n) for m, n in _named(params).values()]
    total = sum(t.numel() for t in tensors)
    return sum(int((t == 0).sum()) for t in tensors) / total if total else 0.0


def _report(params: Params) -> PruneReport:
    named = _named(params)
    per_tensor = {key: measured_sparsity([pair]) for key, pair in named.items()}
    return PruneReport(measured_sparsity(named), per_tensor)


@torch.no_grad()
def magnitude_prune(params: Params, amount: float, scope: str = "global") -> PruneReport:
    """Zero the ``amount`` fraction of weights with the smallest magnitude |w|.

    ``scope="global"`` ranks all tensors together (one threshold; layers that matter less
    end up sparser), ``"layer"`` prunes ``amount`` of each tensor. Han et al. 2015,
    "Learning both Weights and Connections for Efficient Neural Networks".

    ``amount`` is the TOTAL sparsity wanted, so calling again with a larger amount (gradual
    pruning) goes from 50% to 80%, not to 1 - 0.5 * 0.2 = 90%. torch's pruning container
    prunes a float amount *of what is left*; an integer count of weights still to remove,
    k = round(amount * n) - (already masked), lands on the target exactly. The new weights
    are picked by magnitude of the current effective weights. A smaller amount than what is
    already pruned leaves the masks as they are (pruning is never undone).
    """
    amount = check_number("amount", amount, low=0, high=1, high_open=True)
    scope = check_choice("scope", scope, ("global", "layer"))
    named = _named(params)
    pairs = list(named.values())
    scores = {pair: _effective(*pair) for pair in pairs}
    if scope == "global":
        todo = round(amount * sum(t.numel() for t in scores.values())) - sum(_masked_count(m, n) for m, n in pairs)
        if todo > 0:
            prune.global_unstructured(pairs, prune.L1Unstructured, importance_scores=scores, amount=todo)
    else:
        for module, name in pairs:
            todo = round(amount * scores[(module, name)].numel()) - _masked_count(module, name)
            if todo > 0:
                prune.l1_unstructured(module, name, amount=todo, importance_scores=scores[(module, name)])
    return _report(named)


@torch.no_grad()
def threshold_prune(params: Params, threshold: float) -> PruneReport:
    """Zero exactly the weights with |w| < ``threshold``, elementwise; the others are kept.

    The magnitude criterion of Han et al. 2015 with a fixed threshold instead of a fixed
    fraction; masks combine with any earlier ones.
    """
    threshold = check_number("threshold", threshold, low=0)
    named = _named(params)
    for module, name in named.values():
        weight = _effective(module, name)
        prune.custom_from_mask(module, name, (weight.abs() >= threshold).to(weight.dtype))
    return _report(named)


def make_permanent(model: nn.Module) -> list[str]:
    """Fold every pruning mask into its weight (``prune.remove``); returns the tensor names.

    Afterwards the state dict holds plain ``weight`` tensors with the zeros in them, so a
    saved or exported model loads into an unpruned architecture.
    """
    done = []
    for module_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
                done.append(f"{module_name}.{hook._tensor_name}".lstrip("."))
    return done


def restore_masks(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Give ``model`` an (all-ones) mask for every ``<name>_mask`` in ``state_dict``, so that
    a state dict saved mid-pruning loads with ``load_state_dict`` (which then sets the real
    masks). For resuming training from a checkpoint taken while masks were live."""
    done = []
    for key in state_dict:
        if not key.endswith("_mask") or f"{key[:-5]}_orig" not in state_dict:
            continue
        module_name, _, tensor_name = key[:-5].rpartition(".")
        module = model.get_submodule(module_name)
        if not hasattr(module, f"{tensor_name}_mask"):
            prune.identity(module, tensor_name)
            done.append(key[:-5])
    return done
