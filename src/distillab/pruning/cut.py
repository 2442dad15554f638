"""Cut a student out of a pretrained Llama teacher: the pruning half of Minitron
(Muralidharan et al. 2024; Sreenivas et al. 2024). Depth (drop whole decoder layers, by
Block Influence, evenly, or an explicit list) and/or uniform width (FFN neurons, KV groups,
query heads per group, by activation importance); the distillation half is the trainer's.

    student, report = cut_llama(teacher, batches,
                                depth={"method": "block_influence", "keep": 25},
                                width={"intermediate_size": 1024})

Every key is checked before any forward pass. Depth is cut first; the width importance is
then measured on the depth-cut model, the one whose neurons are pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from distillab.core.config import ConfigError, check_choice, check_int, check_number, section
from distillab.pruning.llama_depth import (
    as_llama,
    block_influence,
    check_layers,
    decoder_layers,
    drop_layers,
    every_k,
    layers_to_keep,
)
from distillab.pruning.llama_width import AGGREGATIONS, activation_importance, check_width, prune_width

DEPTH_METHODS = ("block_influence", "every_k", "layers")
DEPTH_KEYS = ("method", "keep", "layers")
WIDTH_KEYS = ("intermediate_size", "num_kv_heads", "heads_per_kv", "aggregation")


def llama_shape(model: nn.Module) -> dict[str, int]:
    """The sizes a cut changes, from the model's config."""
    c = as_llama(model).config
    return {
        "num_layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.intermediate_size,
        "vocab_size": c.vocab_size,
    }


def parameter_count(model: nn.Module) -> int:
    """All parameters, a tied embedding / LM head counted once."""
    return sum(p.numel() for p in as_llama(model).parameters())


def layer_parameter_count(model: nn.Module) -> int:
    """Parameters of the decoder layers alone (no embedding, final norm or LM head)."""
    return sum(p.numel() for p in decoder_layers(as_llama(model)).parameters())


@dataclass
class CutReport:
    """What :func:`cut_llama` did. ``layer_importance``: Block Influence of every teacher
    layer (when depth used it, else None); ``layer_params_*``: decoder layers only, the
    quantity the budgets ("remove about 1/6 / half of the layers' parameters") are stated in."""

    kept_layers: list[int]
    layer_importance: list[float] | None
    shape_before: dict[str, int]
    shape_after: dict[str, int]
    params_before: int
    params_after: int
    layer_params_before: int
    layer_params_after: int
    depth: dict[str, Any] | None = None
    width: dict[str, Any] | None = None
    dropped_layers: list[int] = field(default_factory=list)

    @property
    def layer_params_removed(self) -> float:
        """Fraction of the teacher's layer parameters the student no longer has."""
        return 1.0 - self.layer_params_after / self.layer_params_before

    @property
    def params_removed(self) -> float:
        return 1.0 - self.params_after / self.params_before

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the two removed fractions."""
        out = asdict(self)
        out["layer_params_removed"] = self.layer_params_removed
        out["params_removed"] = self.params_removed
        return out


def _check_keys(spec: Any, allowed: tuple[str, ...], key: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigError(key, spec, f"must be a mapping with keys among {', '.join(allowed)}")
    for name in spec:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", spec[name], f"is not a key of {key} (its keys: {', '.join(allowed)})")
    return dict(spec)


def _check_depth(depth: Any, num_layers: int) -> dict[str, Any]:
    spec = _check_keys(depth, DEPTH_KEYS, "cut.depth")
    with section("cut.depth"):
        method = check_choice("method", spec.get("method"), DEPTH_METHODS)
        if method == "layers":
            if "keep" in spec:
                raise ConfigError("keep", spec["keep"], "is not used with method=layers (give layers: [...])")
            check_layers(spec.get("layers"), num_layers, "layers")
        else:
            if "layers" in spec:
                raise ConfigError("layers", spec["layers"], f"is only used with method=layers, not {method}")
            check_int("keep", spec.get("keep"), low=1, high=num_layers)
    return spec


def _check_width_spec(width: Any, llama: LlamaForCausalLM) -> dict[str, Any]:
    spec = _check_keys(width, WIDTH_KEYS, "cut.width")
    with section("cut.width"):
        check_choice("aggregation", spec.get("aggregation", "mean"), AGGREGATIONS)
        check_width(llama, spec.get("intermediate_size"), spec.get("num_kv_heads"), spec.get("heads_per_kv"))
    return spec


def cut_llama(
    teacher: nn.Module,
    batches: Iterable[Any] = (),
    depth: Mapping[str, Any] | None = None,
    width: Mapping[str, Any] | None = None,
) -> tuple[LlamaForCausalLM, CutReport]:
    """A student cut from ``teacher`` (left unmodified) and its :class:`CutReport`.

    ``depth``: ``{"method": "block_influence", "keep": n}`` (the n layers of highest Block
    Influence on ``batches``), ``{"method": "every_k", "keep": n}`` (n evenly spaced, first
    and last kept; no data) or ``{"method": "layers", "layers": [...]}``.
    ``width``: any of ``intermediate_size``, ``num_kv_heads``, ``heads_per_kv`` (see
    :func:`~distillab.pruning.llama_width.prune_width`) and ``aggregation`` (``mean`` | ``l2``
    over a sequence's tokens), scored by activations on ``batches``.
    ``batches``: calibration batches (input_ids [B, T], dicts with input_ids/attention_mask,
    or (inputs, targets) pairs); needed unless depth is every_k/layers and width is None.
    """
    llama = as_llama(teacher, "teacher")
    num_layers = llama.config.num_hidden_layers
    depth_spec = _check_depth(depth, num_layers) if depth is not None else None
    # Width sizes are checked against the teacher's: cutting depth does not change them.
    width_spec = _check_width_spec(width, llama) if width is not None else None
    needs_data = width_spec is not None or (depth_spec is not None and depth_spec["method"] == "block_influence")
    batches = list(batches)
    if needs_data and not batches:
        raise ConfigError("cut.batches", [], "block_influence and width pruning need at least one calibration batch")

    student, kept, influence = llama, list(range(num_layers)), None
    if depth_spec is not None:
        method = depth_spec["method"]
        if method == "block_influence":
            scores = block_influence(llama, batches)
            influence = [float(s) for s in scores]
            kept = layers_to_keep(scores, depth_spec["keep"], "cut.depth.keep")
        elif method == "every_k":
            kept = every_k(num_layers, depth_spec["keep"], "cut.depth.keep")
        else:
            kept = list(depth_spec["layers"])
        student = drop_layers(llama, kept)
    if width_spec is not None:
        importance = activation_importance(student, batches, width_spec.get("aggregation", "mean"))
        student = prune_width(
            student,
            importance,
            width_spec.get("intermediate_size"),
            width_spec.get("num_kv_heads"),
            width_spec.get("heads_per_kv"),
        )
    if student is llama:  # neither depth nor width: still a new model, never the teacher itself
        student = drop_layers(llama, kept)
    report = CutReport(
        kept_layers=kept,
        layer_importance=influence,
        shape_before=llama_shape(llama),
        shape_after=llama_shape(student),
        params_before=parameter_count(llama),
        params_after=parameter_count(student),
        layer_params_before=layer_parameter_count(llama),
        layer_params_after=layer_parameter_count(student),
        depth=depth_spec,
        width=width_spec,
        dropped_layers=[i for i in range(num_layers) if i not in kept],
    )
    return student, report


@dataclass(frozen=True)
class Budget:
    """Two ways to remove about ``fraction`` of the decoder layers' parameters: keep
    ``keep_layers`` layers (removing ``depth_fraction``), or shrink every layer's FFN to
    ``intermediate_size`` (removing ``width_fraction``)."""

    fraction: float
    keep_layers: int
    depth_fraction: float
    intermediate_size: int
    width_fraction: float


def _layer_params(c: LlamaConfig, intermediate_size: int) -> int:
    """Parameters of one decoder layer with FFN width ``intermediate_size``."""
    h, d = c.hidden_size, c.head_dim
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    attention = h * (q + 2 * kv) + q * h + (q + 2 * kv + h if c.attention_bias else 0)
    ffn = 3 * h * intermediate_size + (2 * intermediate_size + h if c.mlp_bias else 0)
    return attention + ffn + 2 * h  # + the two RMSNorm weights


def parameter_budget(model_or_config: nn.Module | LlamaConfig, fraction: float, multiple: int = 32) -> Budget:
    """The depth keep count and the FFN width (a multiple of ``multiple``) that each remove
    about ``fraction`` of the decoder layers' parameters, so depth and width can be compared
    at one budget. Depth: keep = round(L·(1 − fraction)), at least 1. Width: every layer
    loses 3·hidden parameters per FFN neuron, so I' = I − fraction·P_layer / (3·hidden),
    rounded to the nearest multiple (at least one multiple). Width pruning of the FFN alone
    can remove at most its share of a layer (75% for SmolLM2-135M); beyond it, an error."""
    c = model_or_config if isinstance(model_or_config, LlamaConfig) else as_llama(model_or_config).config
    fraction = check_number("fraction", fraction, low=0, high=1, low_open=True, high_open=True)
    check_int("multiple", multiple, low=1, high=c.intermediate_size)
    layers, inter = c.num_hidden_layers, c.intermediate_size
    keep = max(1, round(layers * (1 - fraction)))
    per_layer = _layer_params(c, inter)
    neurons = inter - fraction * per_layer / (3 * c.hidden_size)
    if neurons < multiple / 2:
        most = 1 - _layer_params(c, multiple) / per_layer
        raise ConfigError(
            "fraction",
            fraction,
            f"is more than FFN width pruning can remove: at most {most:.3f} (intermediate_size={multiple})",
        )
    width = max(multiple, multiple * math.floor(neurons / multiple + 0.5))
    return Budget(
        fraction=fraction,
        keep_layers=keep,
        depth_fraction=1 - keep / layers,
        intermediate_size=width,
        width_fraction=1 - _layer_params(c, width) / per_layer,
    )
