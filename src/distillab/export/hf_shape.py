"""A student's real shape written into its transformers config, so ``from_pretrained`` rebuilds it.

Structured pruning (pruning/structured.py) slices Linear layers and leaves the config as it
was. What a config can say, it is made to say: the number of layers (``num_hidden_layers``)
and one FFN width for every layer (``intermediate_size``). What it cannot say, is handled:

* attention heads: transformers 5 has no ``pruned_heads`` config key and no ``prune_heads``
  (both were removed), and a BERT or ViT derives its head width from
  ``hidden_size / num_attention_heads``. A layer with fewer heads is therefore given its
  removed heads back as zero heads: their query, key and value rows and their output
  projection columns are zero, so each adds exactly nothing (softmax over zero scores times
  zero values is zero) and the logits are those of the pruned model. The folder is as large
  as the unpruned model; the compression report and ONNX keep the real, smaller one.
* FFN widths that differ between layers: one ``intermediate_size`` cannot hold them, and the
  export stops with a ConfigError saying so (ONNX exports any shape).

Then a fresh model of the config must take the weights as they are (``strict`` load): any
other shape no config expresses stops the export the same way, before a folder is written.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from distillab.core.config import ConfigError
from distillab.pruning.structured import _Attention, _attention, _ffn

KEY = "compression.hf"
# Where each family keeps its blocks: BERT, ViT (transformers 5) and Llama, GPT-2.
_LAYER_LISTS = ("encoder.layer", "layers", "transformer.h")
_ENCODERS = ("bert", "vit")
ONNX_HINT = "ONNX (compression.onnx=true) exports any shape"


@dataclass
class RecordedShape:
    """What the export wrote into the config, and the heads it gave back as zero heads."""

    num_layers: int | None = None  # None: no block list found (the config's count is kept)
    intermediate_size: int | None = None  # encoders: the FFN width of every layer
    zero_heads: dict[int, int] = field(default_factory=dict)  # layer -> heads added back as zeros

    def as_dict(self) -> dict[str, object]:
        return {
            "num_layers": self.num_layers,
            "intermediate_size": self.intermediate_size,
            "zero_heads": {str(k): v for k, v in self.zero_heads.items()},
        }


def _block_list(model: nn.Module) -> nn.ModuleList | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith(_LAYER_LISTS):
            return module
    return None


def _is_encoder(config: PretrainedConfig) -> bool:
    """BERT-family and ViT encoders: the layouts structured pruning slices (decoders are cut
    into new models with their own config, pruning/cut.py)."""
    return config.model_type in _ENCODERS


def _grown(linear: nn.Linear, out_features: int, in_features: int) -> nn.Linear:
    """``linear`` with zero rows (outputs) and zero columns (inputs) appended up to the sizes."""
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None)
    new = new.to(dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: linear.out_features, : linear.in_features] = linear.weight
        if linear.bias is not None:
            new.bias.zero_()
            new.bias[: linear.out_features] = linear.bias
    return new


def _restore_heads(attn: _Attention, heads: int) -> int:
    """Append zero heads to a layer until it has ``heads``; returns how many were added."""
    missing = heads - attn.heads
    if missing <= 0:
        return 0
    width = heads * attn.head_dim
    for name in attn.qkv:
        linear = getattr(attn.holder, name)
        setattr(attn.holder, name, _grown(linear, width, linear.in_features))
    out = attn.out_proj
    parent, _, leaf = attn.out.rpartition(".")
    setattr(attn.layer.get_submodule(parent), leaf, _grown(out, out.out_features, width))
    attn.holder.num_attention_heads = heads
    if hasattr(attn.holder, "all_head_size"):  # BERT keeps it; ViT 5 does not
        attn.holder.all_head_size = width
    return missing


def _record_encoder(model: PreTrainedModel, blocks: nn.ModuleList, shape: RecordedShape) -> None:
    config = model.config
    widths = [layer.get_submodule(_ffn(layer)[0]).out_features for layer in blocks]
    if len(set(widths)) > 1:
        raise ConfigError(
            KEY,
            True,
            f"the student's FFN widths differ between layers ({widths}): a transformers config holds one "
            f"intermediate_size for all layers, so no from_pretrained can rebuild it; {ONNX_HINT}",
        )
    config.intermediate_size = shape.intermediate_size = widths[0]
    for i, layer in enumerate(blocks):
        added = _restore_heads(_attention(layer), config.num_attention_heads)
        if added:
            shape.zero_heads[i] = added


def record_shape(model: PreTrainedModel) -> RecordedShape:
    """Write ``model``'s layer count (and, for encoders, FFN width) into its config and give
    removed heads back as zero heads, in place. Call on a copy."""
    shape = RecordedShape()
    blocks = _block_list(model)
    if blocks is None:
        return shape
    model.config.num_hidden_layers = shape.num_layers = len(blocks)
    if _is_encoder(model.config):
        _record_encoder(model, blocks, shape)
    return shape


def rebuilt(model: PreTrainedModel) -> PreTrainedModel:
    """A fresh model of ``model``'s config holding its weights: what ``from_pretrained`` will
    build. A weight the config cannot place (another shape, a missing or extra tensor) is a
    ConfigError of one line."""
    fresh = type(model)(copy.deepcopy(model.config))
    try:
        fresh.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]
        raise ConfigError(
            KEY,
            True,
            f"the student's shape is not one its transformers config can express ({first}); {ONNX_HINT}",
        ) from None
    return fresh.eval()
