"""Teacher outputs as one flat ``{name: tensor}`` dict: what the teacher-output cache holds,
writes to disk (``torch.save``) and memory-maps back, one row per sample.

Names: ``"<member>.logits"``, ``"<member>.hidden_states.<layer>"``,
``"<member>.attentions.<layer>"``; a member kept in top-k form has ``"<member>.topk.indices"``,
``".topk.log_probs"`` and ``".topk.tail"`` in place of its logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillab.models.output import ModelOutput
from distillab.models.topk import TopK, sampled_of, topk_of

FIELDS = ("hidden_states", "attentions")


def flatten(out: ModelOutput | list[ModelOutput]) -> dict[str, Tensor]:
    """``{"<member>.logits": ..., "<member>.hidden_states.<layer>": ...}`` for one or several teachers."""
    flat = {}
    for i, member in enumerate(out if isinstance(out, list) else [out]):
        flat[f"{i}.logits"] = member.logits
        for field in FIELDS:
            for layer, value in enumerate(getattr(member, field) or ()):
                flat[f"{i}.{field}.{layer}"] = value
    return flat


def to_topk(
    flat: dict[str, Tensor], k: int, temperature: float, samples: int = 0, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Each member's dense logits [..., V] replaced by their top-k form (losses/topk.py): token
    ids in the smallest integer type that holds V, log-probabilities at ``temperature`` and
    the tail mass in half precision. What a language-model teacher's cache keeps: V floats a
    position would not fit. ``samples`` > 0: the last that many of the k slots hold tokens
    drawn from the rest of the distribution (``sampled_of``) instead of the next top tokens."""
    out = {}
    for name, value in flat.items():
        if not name.endswith(".logits"):
            out[name] = value
            continue
        member = name.removesuffix(".logits")
        top = sampled_of(value, k, samples, temperature, generator) if samples else topk_of(value, k, temperature)
        vocab = value.shape[-1]
        index_dtype = torch.int16 if vocab <= torch.iinfo(torch.int16).max + 1 else torch.int32
        out[f"{member}.topk.indices"] = top.indices.to(index_dtype)
        out[f"{member}.topk.log_probs"] = top.log_probs.half()
        out[f"{member}.topk.tail"] = top.tail.half()
    return out


def unflatten(flat: dict[str, Tensor]) -> ModelOutput | list[ModelOutput] | TopK | list[TopK]:
    """The inverse of :func:`flatten` (and of :func:`to_topk`: a member kept as top-k comes
    back as a TopK, or as a ModelOutput whose logits are that TopK when it also has hidden
    states or attentions); layers that were not kept are None in their tuple."""
    members = sum(k.endswith((".logits", ".topk.indices")) for k in flat)

    def field(i: int, name: str) -> tuple[Tensor | None, ...] | None:
        layers = [int(k.rsplit(".", 1)[1]) for k in flat if k.startswith(f"{i}.{name}.")]
        return tuple(flat.get(f"{i}.{name}.{j}") for j in range(max(layers) + 1)) if layers else None

    def member(i: int) -> ModelOutput | TopK:
        features = field(i, "hidden_states"), field(i, "attentions")
        if f"{i}.topk.indices" in flat:
            top = TopK(flat[f"{i}.topk.indices"].long(), flat[f"{i}.topk.log_probs"], flat[f"{i}.topk.tail"])
            # With hidden states or attentions (a feature term beside the token term), the
            # top-k form stands where the logits would.
            return ModelOutput(top, *features) if any(f is not None for f in features) else top  # type: ignore[arg-type]
        return ModelOutput(flat[f"{i}.logits"], *features)

    outs = [member(i) for i in range(members)]
    return outs if members > 1 else outs[0]


def cut_positions(name: str, value: Tensor, seq_len: int | None) -> Tensor:
    """Token positions past ``seq_len`` dropped: [B, T, H] hidden states, [B, heads, T, T]
    attentions, [B, T, C] logits of a label per token (one row of class logits is kept whole)."""
    if seq_len is None or (name.endswith(".logits") and value.dim() < 3):
        return value
    if ".attentions." in name:
        return value[:, :, :seq_len, :seq_len]
    return value[:, :seq_len]
