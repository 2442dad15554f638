"""Width pruning of a pretrained Llama: FFN neurons and attention heads (grouped-query
attention kept consistent), scored by their activations on calibration data as Minitron
does (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation"; Sreenivas et al. 2024, "LLM Pruning and Distillation in Practice").

HF's LlamaConfig has one ``intermediate_size`` and one head count for all layers, so the
cut is uniform: every layer keeps the same number of neurons and heads, each layer its own
most important ones. ``head_dim`` and the hidden width stay. The student is a new model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import LlamaForCausalLM

from distillab.core.config import ConfigError, check_choice, check_int
from distillab.pruning.llama_depth import as_llama, calibration_inputs, decoder_layers, plain_copy
from distillab.pruning.structured import _slice

AGGREGATIONS = ("mean", "l2")


@dataclass
class WidthImportance:
    """Activation importance per layer: ``neurons`` [layers, intermediate], ``heads``
    [layers, num_attention_heads] (query heads, in the model's order), both >= 0."""

    neurons: Tensor
    heads: Tensor

    def group_importance(self, num_kv_heads: int) -> Tensor:
        """[layers, num_kv_heads]: a KV group's importance is the sum of its query heads'."""
        return self.heads.unflatten(1, (num_kv_heads, -1)).sum(-1)


def _over_tokens(values: Tensor, mask: Tensor, aggregation: str) -> Tensor:
    """[B, T, N] non-negative values → [B, N] per sequence, over its non-padding tokens."""
    m = mask.unsqueeze(-1)
    if aggregation == "l2":
        return (values.pow(2) * m).sum(1).sqrt()
    return (values * m).sum(1) / m.sum(1).clamp(min=1)


@torch.no_grad()
def activation_importance(model: nn.Module, batches: Iterable[Any], aggregation: str = "mean") -> WidthImportance:
    """Minitron's activation-based importance, forward passes only (Muralidharan et al. 2024):

    * FFN neuron j of layer l: |a_j| with a = act_fn(gate_proj(x)) ⊙ up_proj(x), the input of
      down_proj (what neuron j writes to the residual stream is a_j · W_down[:, j]);
    * attention head h of layer l: ‖o_h‖₂, the L2 norm of head h's slice of o_proj's input
      (the head's attention output, head_dim values).

    Aggregation (the paper compares several): over the non-padding tokens of each sequence
    ``aggregation`` = ``"mean"`` (mean over tokens) or ``"l2"`` (L2 norm over tokens), then
    the mean over all sequences of all batches. Layers are scored independently (the cut is
    per layer). Runs in eval mode.
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    llama = as_llama(model)
    layers = decoder_layers(llama)
    device = next(llama.parameters()).device
    head_dim = llama.config.head_dim
    neurons = torch.zeros(len(layers), layers[0].mlp.down_proj.in_features, dtype=torch.float64)
    heads = torch.zeros(len(layers), layers[0].self_attn.o_proj.in_features // head_dim, dtype=torch.float64)
    state: dict[str, Tensor] = {}

    def ffn_hook(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            a = args[0].double().abs()
            neurons[i] += _over_tokens(a, state["mask"], aggregation).sum(0).cpu()

        return hook

    def head_hook(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            per_head = args[0].double().unflatten(-1, (-1, head_dim)).norm(dim=-1)  # [B, T, H]
            heads[i] += _over_tokens(per_head, state["mask"], aggregation).sum(0).cpu()

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(ffn_hook(i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(head_hook(i)))
    was_training = llama.training
    llama.eval()
    sequences = 0
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in calibration_inputs(batch).items()}
            state["mask"] = inputs["attention_mask"].to(torch.float64)
            sequences += int((inputs["attention_mask"].sum(1) > 0).sum())
            llama(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        llama.train(was_training)
    if sequences == 0:
        raise ConfigError("batches", [], "must hold at least one sequence with a non-padding token")
    return WidthImportance(neurons / sequences, heads / sequences)


def check_width(
    llama: LlamaForCausalLM, intermediate_size: int | None, num_kv_heads: int | None, heads_per_kv: int | None
) -> tuple[int, int, int]:
    """The student's (intermediate_size, num_kv_heads, heads_per_kv), None meaning unchanged."""
    c = llama.config
    group = c.num_attention_heads // c.num_key_value_heads
    inter = c.intermediate_size if intermediate_size is None else intermediate_size
    kv = c.num_key_value_heads if num_kv_heads is None else num_kv_heads
    q = group if heads_per_kv is None else heads_per_kv
    check_int("intermediate_size", inter, low=1, high=c.intermediate_size)
    check_int("num_kv_heads", kv, low=1, high=c.num_key_value_heads)
    check_int("heads_per_kv", q, low=1, high=group)
    if c.hidden_size % (kv * q):
        # LlamaConfig.validate_architecture refuses it, even with head_dim given explicitly.
        raise ConfigError(
            "heads_per_kv",
            q,
            f"num_kv_heads × heads_per_kv = {kv * q} query heads must divide hidden_size={c.hidden_size} (LlamaConfig)",
        )
    return inter, kv, q


def check_width_importance(importance: WidthImportance, llama: LlamaForCausalLM) -> None:
    c = llama.config
    want = {
        "neurons": (c.num_hidden_layers, c.intermediate_size),
        "heads": (c.num_hidden_layers, c.num_attention_heads),
    }
    for name, shape in want.items():
        got = tuple(getattr(importance, name).shape)
        if got != shape:
            raise ConfigError(f"importance.{name}", got, f"must have the model's shape {shape}")


def kept_heads(importance: Tensor, num_kv_heads: int, keep_kv: int, keep_per_kv: int) -> tuple[list[int], list[int]]:
    """For one layer with query-head ``importance`` [H]: the KV heads kept (the ``keep_kv``
    groups of highest summed importance) and the query heads kept (in each kept group its
    ``keep_per_kv`` most important), both as increasing indices. Query head h uses KV head
    h // (H / num_kv_heads), as in HF's ``repeat_kv``."""
    groups = importance.unflatten(0, (num_kv_heads, -1))
    size = groups.shape[1]
    kv = sorted(groups.sum(1).topk(keep_kv).indices.tolist())
    queries = [g * size + j for g in kv for j in sorted(groups[g].topk(keep_per_kv).indices.tolist())]
    return kv, queries


def _rows(d: int, heads: list[int], device: torch.device) -> Tensor:
    return torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]).to(device)


@torch.no_grad()
def prune_width(
    model: nn.Module,
    importance: WidthImportance,
    intermediate_size: int | None = None,
    num_kv_heads: int | None = None,
    heads_per_kv: int | None = None,
) -> LlamaForCausalLM:
    """A new LlamaForCausalLM with, in every layer, its ``intermediate_size`` most important
    FFN neurons (rows of gate_proj and up_proj, columns of down_proj) and its most important
    attention heads: the ``num_kv_heads`` KV groups of highest summed query-head importance
    (rows of k_proj, v_proj), and in each kept group its ``heads_per_kv`` most important
    query heads (rows of q_proj, columns of o_proj), so num_attention_heads becomes
    num_kv_heads × heads_per_kv. None leaves that size as it is. Kept units stay in their
    original order, so the student computes exactly the teacher with the others zeroed.
    """
    teacher = as_llama(model)
    inter, kv, q = check_width(teacher, intermediate_size, num_kv_heads, heads_per_kv)
    check_width_importance(importance, teacher)
    c = teacher.config
    d = c.head_dim
    student = plain_copy(teacher)
    for i, layer in enumerate(decoder_layers(student)):
        mlp, attn = layer.mlp, layer.self_attn
        if inter != c.intermediate_size:
            keep = importance.neurons[i].topk(inter).indices.sort().values.to(mlp.down_proj.weight.device)
            mlp.gate_proj = _slice(mlp.gate_proj, keep, 0)
            mlp.up_proj = _slice(mlp.up_proj, keep, 0)
            mlp.down_proj = _slice(mlp.down_proj, keep, 1)
            mlp.intermediate_size = inter
        if (kv, q) != (c.num_key_value_heads, c.num_attention_heads // c.num_key_value_heads):
            kv_kept, q_kept = kept_heads(importance.heads[i], c.num_key_value_heads, kv, q)
            device = attn.o_proj.weight.device
            attn.q_proj = _slice(attn.q_proj, _rows(d, q_kept, device), 0)
            attn.k_proj = _slice(attn.k_proj, _rows(d, kv_kept, device), 0)
            attn.v_proj = _slice(attn.v_proj, _rows(d, kv_kept, device), 0)
            attn.o_proj = _slice(attn.o_proj, _rows(d, q_kept, device), 1)
            attn.num_key_value_groups = q  # read by the attention kernels to repeat K and V
    config = student.config  # the copy's own, shared by all its modules
    config.intermediate_size = inter
    config.num_key_value_heads = kv
    config.num_attention_heads = kv * q
    config.head_dim = d  # explicit: hidden_size / heads no longer gives it
    return student
