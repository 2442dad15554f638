"""Structured pruning that really shrinks the model: whole attention heads and FFN neurons
are sliced out of the Linear layers, so parameters, memory and latency all go down.

transformers 5 has neither ``PreTrainedModel.prune_heads`` nor a ``head_mask`` argument,
so heads are gated here with forward pre-hooks on the attention output projection (its
input is the per-head context, concatenated) and removed by slicing q/k/v out-features and
the output projection's in-features. The model's config keeps the original sizes: a
pruned model is saved as a state dict or exported, not rebuilt from its config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import prune_linear_layer

from distillab.core.config import ConfigError, check_choice, check_number

# Where each architecture keeps its parts, relative to one encoder layer:
# (module holding the head count, q/k/v names in it, output projection, head-size attribute)
_ATTENTION = (
    ("attention.self", ("query", "key", "value"), "attention.output.dense", "attention_head_size"),  # BERT
    ("attention", ("q_proj", "k_proj", "v_proj"), "attention.o_proj", "head_dim"),  # ViT, transformers 5
    ("attention.attention", ("query", "key", "value"), "attention.output.dense", "attention_head_size"),  # ViT 4
)
_FFN = (("intermediate.dense", "output.dense"), ("mlp.fc1", "mlp.fc2"))  # (in: hidden -> I, out: I -> hidden)


@dataclass
class _Attention:
    holder: nn.Module
    qkv: tuple[str, str, str]
    out: str  # path from the layer
    layer: nn.Module
    head_dim: int

    @property
    def heads(self) -> int:
        return getattr(self.holder, self.qkv[0]).out_features // self.head_dim

    @property
    def out_proj(self) -> nn.Linear:
        return self.layer.get_submodule(self.out)


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith(("encoder.layer", "layers")):
            return list(module)
    raise ConfigError("model", type(model).__name__, "has no encoder layer list (…encoder.layer or …layers)")


def _has(module: nn.Module, *paths: str) -> bool:
    try:
        for path in paths:
            module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _attention(layer: nn.Module) -> _Attention:
    for path, qkv, out, size_attr in _ATTENTION:
        if _has(layer, out, *(f"{path}.{name}" for name in qkv)):
            holder = layer.get_submodule(path)
            return _Attention(holder, qkv, out, layer, int(getattr(holder, size_attr)))
    raise ConfigError("model", type(layer).__name__, "is an encoder layer with an unsupported attention layout")


def _ffn(layer: nn.Module) -> tuple[str, str]:
    for paths in _FFN:
        if _has(layer, *paths):
            return paths
    raise ConfigError("model", type(layer).__name__, "is an encoder layer with an unsupported FFN layout")


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def _slice(linear: nn.Linear, keep: Tensor, dim: int) -> nn.Linear:
    """``linear`` keeping only indices ``keep`` along ``dim`` (0: outputs, 1: inputs).

    Uses the effective weight, so magnitude-pruning zeros survive (their masks do not).
    """
    new = prune_linear_layer(linear, keep, dim)
    return new.to(dtype=linear.weight.dtype)  # prune_linear_layer builds in the default dtype


# ---------------------------------------------------------------- attention heads


def _head_gate_hook(gate: Tensor, heads: int) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        context = args[0]  # [batch, ..., heads * head_dim]
        per_head = context.unflatten(-1, (heads, -1))
        shape = (gate.shape[0],) + (1,) * (per_head.dim() - 3) + (heads, 1)
        return ((per_head * gate.view(shape)).flatten(-2), *args[1:])

    return hook


def _weight_norm_importance(attn: _Attention) -> Tensor:
    d = attn.head_dim
    squares = torch.zeros(attn.heads)
    for name in attn.qkv:
        w = getattr(attn.holder, name).weight.detach().float()
        squares += w.unflatten(0, (attn.heads, d)).pow(2).sum(dim=(1, 2)).cpu()
    o = attn.out_proj.weight.detach().float()
    squares += o.unflatten(1, (attn.heads, d)).pow(2).sum(dim=(0, 2)).cpu()
    return squares.sqrt()


def _to(inputs: Any, device: torch.device) -> Any:
    return {k: v.to(device) for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.to(device)


def _gradient_importance(model: nn.Module, attns: list[_Attention], batches: Iterable[dict[str, Any]]) -> Tensor:
    device = next(model.parameters()).device
    total = torch.zeros(len(attns), max(a.heads for a in attns))
    examples = 0
    for batch in batches:
        labels = batch["labels"].to(device)
        n = labels.shape[0]
        # One gate per example and head: |dL/dg| is then per example, as in Michel et al.
        gates = [torch.ones(n, a.heads, device=device, requires_grad=True) for a in attns]
        hooks = [a.out_proj.register_forward_pre_hook(_head_gate_hook(g, a.heads)) for a, g in zip(attns, gates)]
        try:
            logits = model(_to(batch["inputs"], device)).logits
            loss = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), reduction="sum")
            # autograd.grad, not backward: parameter .grad stays untouched.
            grads = torch.autograd.grad(loss, gates)
        finally:
            for hook in hooks:
                hook.remove()
        for i, grad in enumerate(grads):
            total[i, : grad.shape[1]] += grad.abs().sum(0).cpu()
        examples += n
    if not examples:
        raise ConfigError("batches", [], "must yield at least one batch for method='gradient'")
    return total / examples


def head_importance(
    model: nn.Module,
    batches: Iterable[dict[str, Any]] = (),
    method: str = "gradient",
    normalize: bool = True,
) -> Tensor:
    """Importance of every attention head, a [layers, heads] tensor (>= 0).

    ``"gradient"``: Michel et al. 2019, "Are Sixteen Heads Really Better than One?" — a gate
    ξ_h = 1 multiplies each head's output and I_h = E_x |∂L(x)/∂ξ_h|, the expected loss
    change from removing the head (first-order Taylor), over ``batches`` (dicts with
    ``inputs`` and ``labels``, e.g. validation batches), in eval mode.
    ``"weight_norm"``: the L2 norm of the head's slices of W_q, W_k, W_v and W_o, no data.

    ``normalize`` divides each layer by its L2 norm over heads, as Michel et al. do, so
    that a global ranking compares heads across layers. Layers with fewer heads (after an
    earlier pruning) are padded with +inf: never chosen for removal.
    """
    check_choice("method", method, ("gradient", "weight_norm"))
    attns = [_attention(layer) for layer in _encoder_layers(model)]
    if method == "gradient":
        was_training = model.training
        model.eval()  # no dropout: the importance of a head should not depend on the noise
        try:
            scores = _gradient_importance(model, attns, batches)
        finally:
            model.train(was_training)
    else:
        scores = torch.zeros(len(attns), max(a.heads for a in attns))
        for i, attn in enumerate(attns):
            scores[i, : attn.heads] = _weight_norm_importance(attn)
    for i, attn in enumerate(attns):
        if normalize:
            norm = scores[i, : attn.heads].norm()
            scores[i, : attn.heads] /= norm if norm > 0 else 1.0
        scores[i, attn.heads :] = float("inf")
    return scores


def _remove_heads(attn: _Attention, heads: list[int]) -> None:
    d = attn.head_dim
    kept = [h for h in range(attn.heads) if h not in heads]
    device = attn.out_proj.weight.device
    index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in kept]).to(device)
    for name in attn.qkv:
        setattr(attn.holder, name, _slice(getattr(attn.holder, name), index, 0))
    _replace(attn.layer, attn.out, _slice(attn.out_proj, index, 1))
    # The attention forward reshapes with -1 heads, but keep the bookkeeping true too.
    attn.holder.num_attention_heads = len(kept)
    if hasattr(attn.holder, "all_head_size"):
        attn.holder.all_head_size = len(kept) * d


@torch.no_grad()
def prune_heads(model: nn.Module, importance: Tensor, fraction: float) -> dict[int, list[int]]:
    """Remove the ``fraction`` of all heads (rounded) with the lowest ``importance``, ranked
    across layers, keeping at least one head per layer. Returns {layer: removed head indices}
    (indices as in ``importance``, i.e. in the model before this call).

    Michel et al. 2019 prune globally by normalized importance; heads are sliced out of
    q/k/v (out-features) and the output projection (in-features).
    """
    fraction = check_number("fraction", fraction, low=0, high=1, high_open=True)
    attns = [_attention(layer) for layer in _encoder_layers(model)]
    counts = [a.heads for a in attns]
    if importance.dim() != 2 or importance.shape[0] != len(attns) or importance.shape[1] < max(counts):
        raise ConfigError("importance", tuple(importance.shape), f"must be [layers={len(attns)}, heads>={max(counts)}]")
    todo = min(round(fraction * sum(counts)), sum(counts) - len(attns))
    order = sorted(((float(importance[i, h]), i, h) for i, c in enumerate(counts) for h in range(c)))
    removed: dict[int, list[int]] = {i: [] for i in range(len(attns))}
    for _, i, h in order:
        if todo == 0:
            break
        if counts[i] - len(removed[i]) > 1:
            removed[i].append(h)
            todo -= 1
    for i, heads in removed.items():
        if heads:
            _remove_heads(attns[i], sorted(heads))
    return {i: sorted(heads) for i, heads in removed.items()}


# ---------------------------------------------------------------- FFN neurons


@torch.no_grad()
def neuron_importance(model: nn.Module) -> list[Tensor]:
    """Per layer, the score of each intermediate neuron j: ||W_in[j, :]||_2 · ||W_out[:, j]||_2.

    The neuron adds W_out[:, j] · σ(W_in[j] · x + b_j) to the residual stream; the product
    of norms bounds its size for unit-norm x (σ = GELU, |σ(z)| <= |z|). Norm-based
    structured pruning as in Li et al. 2017, "Pruning Filters for Efficient ConvNets".
    """
    scores = []
    for layer in _encoder_layers(model):
        fc_in, fc_out = (layer.get_submodule(p) for p in _ffn(layer))
        scores.append(fc_in.weight.float().norm(dim=1) * fc_out.weight.float().norm(dim=0))
    return scores


@torch.no_grad()
def prune_neurons(model: nn.Module, fraction: float) -> dict[int, int]:
    """Remove the ``fraction`` (rounded, at least one kept) of intermediate FFN neurons with
    the lowest :func:`neuron_importance` in every layer, slicing the intermediate dense
    (out-features) and the output dense (in-features). Returns {layer: neurons removed}."""
    fraction = check_number("fraction", fraction, low=0, high=1, high_open=True)
    removed = {}
    for i, (layer, score) in enumerate(zip(_encoder_layers(model), neuron_importance(model))):
        in_path, out_path = _ffn(layer)
        width = score.numel()
        keep_n = width - min(round(fraction * width), width - 1)
        keep = score.topk(keep_n).indices.sort().values.to(score.device)
        _replace(layer, in_path, _slice(layer.get_submodule(in_path), keep, 0))
        _replace(layer, out_path, _slice(layer.get_submodule(out_path), keep, 1))
        removed[i] = width - keep_n
    return removed
