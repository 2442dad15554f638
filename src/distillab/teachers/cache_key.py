"""What a teacher-output cache entry is asked for (:class:`SplitRequest`) and the key it is
stored under.

The key is SHA-256 of: the teachers' weights, the split's inputs (and domains, when teachers
are routed by domain), what was asked (hidden states, attentions, which layers, top-k), the
routing, and the precision it ran in. Any change gives a new key, so a stale entry is never
read; it is simply not found.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from distillab.core.keys import short_hash, tensors_digest
from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.teachers.ensemble import Teachers


@dataclass
class SplitRequest:
    """One split to serve from the cache, as the LightningModule sees it when a stage starts."""

    split: str
    dataset: IndexedTensorDataset
    hidden_states: bool = False
    attentions: bool = False
    inputs_vary: bool = False  # random augmentation: a new input every epoch
    batch_size: int = 256
    device: torch.device | str = "cpu"
    precision: str = "32-true"
    context: Callable[[], AbstractContextManager] = nullcontext  # autocast under mixed precision
    # The hidden-state/attention tensors the loss reads, as flat names ("0.hidden_states.6");
    # None: every layer. Logits are always kept.
    keep: frozenset[str] | None = None
    # Language-model teachers: keep each position's top k tokens at this temperature, not V logits.
    topk: int | None = None
    topk_temperature: float = 1.0
    topk_samples: int = 0  # of the k slots, how many hold tokens sampled beyond the top ones


def weights_fingerprint(teachers: Teachers) -> str:
    """SHA-256 of every weight of the teachers, by name."""
    return tensors_digest(teachers.state_dict().items())


def data_fingerprint(dataset: IndexedTensorDataset, with_domain: bool) -> str:
    """SHA-256 of the split's inputs (by input name), and of its samples' domains if asked."""
    inputs = dataset.inputs if isinstance(dataset.inputs, dict) else {"": dataset.inputs}
    named = [(name, inputs[name]) for name in sorted(inputs)]
    if with_domain:  # an empty name hashes nothing: stored entries keep their keys
        named.append(("", dataset.extras["domain"]))
    return tensors_digest(named)


# The on-disk form (teachers/shards.py): a new form gives new keys, so older entries are not found.
FORMAT_PART = "shards/2"


def cache_key(teachers: Teachers, request: SplitRequest, shard_rows: int) -> str:
    """The entry's key: 20 hex digits of SHA-256 over everything that determines its outputs,
    the shard size included (each shard draws its own sampled top-k slots)."""
    parts = [
        weights_fingerprint(teachers),
        data_fingerprint(request.dataset, teachers.route_by_domain),
        f"hidden={request.hidden_states} attn={request.attentions} routed={teachers.route_by_domain} "
        f"members={len(teachers)} precision={request.precision}",
    ]
    if request.keep is not None and (request.hidden_states or request.attentions):
        parts.append("keep=" + ",".join(sorted(request.keep)))
    parts.append(f"{FORMAT_PART} rows={shard_rows}")
    if request.topk is not None:
        parts.append(f"topk={request.topk} T={request.topk_temperature}")
        if request.topk_samples:
            parts.append(f"samples={request.topk_samples}")
    return short_hash("|".join(parts), 20)
