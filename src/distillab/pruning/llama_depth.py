"""Depth pruning of a pretrained Llama: score every decoder layer, keep some, copy them out.

The score is Block Influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models
are More Redundant Than You Expect"), which Minitron uses for depth (Muralidharan et al.
2024; Sreenivas et al. 2024): a layer that barely turns its input hidden state changes the
network least when removed. The student is a new model; the teacher is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import LlamaForCausalLM

from distillab.core.config import ConfigError, check_int


def as_llama(model: nn.Module, key: str = "model") -> LlamaForCausalLM:
    """``model`` itself, or the LlamaForCausalLM inside an adapter holding it as ``.model``
    (distillab's TransformerClassifier)."""
    if isinstance(model, LlamaForCausalLM):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, LlamaForCausalLM):
        return inner
    raise ConfigError(key, type(model).__name__, "must be a transformers LlamaForCausalLM (or an adapter holding one)")


def calibration_inputs(batch: Any) -> dict[str, Tensor]:
    """``input_ids`` and ``attention_mask`` (ones where none is given) of one calibration batch:
    a LongTensor [B, T], a dict with ``input_ids``, a dict with ``inputs``, or an
    ``(inputs, targets)`` pair as distillab's data modules yield."""
    if isinstance(batch, Tensor):
        return {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
    if isinstance(batch, dict) and "input_ids" in batch:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask}
    if isinstance(batch, dict) and "inputs" in batch:
        return calibration_inputs(batch["inputs"])
    if isinstance(batch, (tuple, list)) and batch:
        return calibration_inputs(batch[0])
    raise ConfigError(
        "batches", type(batch).__name__, "each batch must be input_ids, a dict with input_ids, or (inputs, y)"
    )


def plain_copy(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """A deep copy of ``model`` that is an ordinary float model: a teacher loaded from GGUF
    (``gguf_file=``, de-quantized on the CPU) still carries its quantizer, which makes
    ``save_pretrained`` refuse; the student, with plain float weights, drops it. Weights
    still held quantized cannot be sliced: a ConfigError."""
    quantized = sorted(
        {type(m).__name__ for m in model.modules() if "quantiz" in type(m).__module__ or "gguf" in type(m).__module__}
        | {str(p.dtype) for p in model.parameters() if not p.dtype.is_floating_point}
    )
    if quantized:
        raise ConfigError("teacher", quantized, "holds quantized weights: load it de-quantized (float) to cut it")
    student = copy.deepcopy(model)
    # What transformers' HfQuantizer.remove_quantization_config removes, for a de-quantized model.
    for name in ("hf_quantizer", "quantization_method", "_weight_conversions"):
        if hasattr(student, name):
            delattr(student, name)
    if hasattr(student.config, "quantization_config"):
        del student.config.quantization_config
    if getattr(student.config, "_is_quantized", False):
        student.config._is_quantized = False
    if hasattr(student, "is_quantized"):
        student.is_quantized = False
    return student


def decoder_layers(model: LlamaForCausalLM) -> nn.ModuleList:
    return model.model.layers


def _hidden(value: Any) -> Tensor:
    # A decoder layer returns a tensor in transformers 5, a tuple (hidden, ...) in 4.
    return value[0] if isinstance(value, (tuple, list)) else value


@torch.no_grad()
def block_influence(model: nn.Module, batches: Iterable[Any]) -> Tensor:
    """Block Influence of every decoder layer, a float64 tensor [num_layers]:

        BI_i = 1 − E_t [ x_i,t · x_{i+1},t / (‖x_i,t‖ ‖x_{i+1},t‖) ]

    with x_i the hidden state entering layer i and x_{i+1} the one leaving it, the
    expectation over every non-padding token (``attention_mask`` = 1) of every batch.
    The states are read by hooks on the decoder layers themselves, not from
    ``output_hidden_states``, whose last entry is after the final RMSNorm.
    Runs in eval mode; 0 means the layer is the identity on these tokens.
    """
    llama = as_llama(model)
    layers = decoder_layers(llama)
    device = next(llama.parameters()).device
    sums = torch.zeros(len(layers), dtype=torch.float64)
    tokens = 0
    state: dict[str, Any] = {}

    def pre_hook(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            state[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def post_hook(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            cos = torch.nn.functional.cosine_similarity(state.pop(i).double(), _hidden(output).double(), dim=-1)
            sums[i] += (cos * state["mask"]).sum().cpu()

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(post_hook(i), with_kwargs=True))
    was_training = llama.training
    llama.eval()
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in calibration_inputs(batch).items()}
            state["mask"] = inputs["attention_mask"].to(torch.float64)
            tokens += int(inputs["attention_mask"].sum())
            llama(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        llama.train(was_training)
    if tokens == 0:
        raise ConfigError("batches", [], "must hold at least one non-padding token")
    return 1.0 - sums / tokens


def layers_to_keep(importance: Tensor | Sequence[float], keep: int, key: str = "keep") -> list[int]:
    """Indices of the ``keep`` layers of highest ``importance`` (e.g. Block Influence), in
    layer order; ties go to the earlier layer."""
    scores = torch.as_tensor(importance, dtype=torch.float64).flatten()
    check_int(key, keep, low=1, high=scores.numel())
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:keep])


def every_k(num_layers: int, keep: int, key: str = "keep") -> list[int]:
    """``keep`` layers evenly spaced over ``num_layers``, the first and the last always kept:
    index ⌊i·(L−1)/(keep−1) + ½⌋ for i = 0..keep−1, in integers (so the dropped layers are spread evenly
    through the interior, the data-free baseline to Block Influence). ``keep=1``: layer 0."""
    check_int("num_layers", num_layers, low=1)
    check_int(key, keep, low=1, high=num_layers)
    if keep == 1:
        return [0]
    # Exact integer rounding (a float step can land just under a half); the step is >= 1,
    # so the indices are distinct.
    return [(2 * i * (num_layers - 1) + keep - 1) // (2 * (keep - 1)) for i in range(keep)]


def check_layers(layers: Any, num_layers: int, key: str = "layers") -> list[int]:
    """``layers`` as a list of distinct, increasing layer indices in [0, num_layers)."""
    allowed = f"must be a non-empty increasing list of distinct layer indices in [0, {num_layers - 1}]"
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError(key, layers, allowed)
    out = list(layers)
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers for i in out):
        raise ConfigError(key, layers, allowed)
    if any(a >= b for a, b in zip(out, out[1:])):
        raise ConfigError(key, layers, allowed)
    return out


def drop_layers(model: nn.Module, keep: Sequence[int]) -> LlamaForCausalLM:
    """A new LlamaForCausalLM with only the decoder layers ``keep`` (increasing indices) of
    ``model``, their weights copied: ``config.num_hidden_layers`` set, ``config.layer_types``
    (where present) cut to the kept layers, and each attention's ``layer_idx`` (its slot in
    the KV cache) renumbered 0..len(keep)−1. ``model`` is left as it was."""
    teacher = as_llama(model)
    kept = check_layers(keep, len(decoder_layers(teacher)), "keep")
    student = plain_copy(teacher)
    old = decoder_layers(student)
    student.model.layers = nn.ModuleList([old[i] for i in kept])
    for new_idx, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_idx
    config = student.config  # the copy's own: deepcopy copied it with the model
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        config.layer_types = [layer_types[i] for i in kept]
    return student
