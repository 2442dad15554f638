"""Dynamic int8 quantization of Linear layers (weights int8, activations quantized on the fly).

Uses ``torch.ao.quantization.quantize_dynamic``. It is deprecated in favour of torchao
(a DeprecationWarning on every call) but still works on CPU in torch 2.13 for HF ViT and
BERT and needs no extra dependency, calibration data or special hardware.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from distillab.pruning.magnitude import make_permanent

# In order of preference: x86 and fbgemm are the server-CPU kernels, qnnpack the ARM ones.
_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")


def _ensure_engine() -> str:
    """The quantized engine to run on; chosen only when torch has none selected."""
    current = torch.backends.quantized.engine
    if current != "none":
        return current
    supported = torch.backends.quantized.supported_engines
    usable = [e for e in _ENGINES if e in supported]
    if not usable:
        raise RuntimeError(f"this torch build has no quantized CPU engine (supported: {supported})")
    torch.backends.quantized.engine = usable[0]
    return usable[0]


def deployable_copy(model: nn.Module) -> nn.Module:
    """An eval-mode CPU copy of ``model`` with its pruning masks folded into the weights.

    ``model`` keeps its masks and mode. A pruned module holds ``weight`` as a plain attribute
    computed from ``weight_orig * weight_mask``, a non-leaf tensor that ``deepcopy`` refuses;
    the memo hands deepcopy a detached copy of it instead (the hook recomputes it anyway).
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                derived = getattr(module, hook._tensor_name)
                memo[id(derived)] = derived.detach().clone()
    duplicate = copy.deepcopy(model, memo).cpu().eval()
    make_permanent(duplicate)
    return duplicate


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model``: every ``nn.Linear`` becomes a dynamically quantized Linear.

    The original stays float. The copy is in eval mode and runs on CPU only (the int8
    kernels are CPU kernels); a :class:`TransformerClassifier` stays one, so its forward
    still returns ``ModelOutput``. Pruning masks are folded in first so the zeros are
    what gets quantized, not a stale ``weight`` attribute. Embeddings, LayerNorm and the
    patch convolution stay float.
    """
    _ensure_engine()
    return torch.ao.quantization.quantize_dynamic(deployable_copy(model), {nn.Linear}, dtype=torch.qint8)
