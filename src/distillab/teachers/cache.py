"""Teacher outputs computed once per input and looked up by the batch's ``index``.

A frozen teacher gives the same outputs for the same inputs, so in offline distillation
its forward on every batch of every epoch repeats work: for a teacher 10-30x the
student's size it is most of an epoch. When a split's inputs do not change between epochs
(no random augmentation), the teacher runs once over the split, in order, and each batch
then reads rows ``index`` of the result. ``index`` is the sample's position in its split,
so the lookup is right under shuffling and under DDP's sampler (every rank sees the whole
split's outputs and reads its own rows).

An entry is keyed by SHA-256 of: the teachers' weights, the split's inputs (and domains,
when teachers are routed by domain), what was asked (hidden states, attentions), the
routing, and the precision it ran in. Any change gives a new key, so a stale entry is
never read; it is simply not found.

Modes (``teacher.cache``):
  off     the teacher runs on every batch
  memory  computed when fitting/testing starts, held for this run only
  disk    computed once and written under ``<teachers_dir>/outputs/<key>/`` (with a SHA-256
          manifest; a damaged entry is rebuilt), then memory-mapped: every later run against
          the same teacher and data (a whole sweep of students) skips the teacher entirely
  auto    disk; training batches whose inputs are augmented go to the live teacher, and
          the log says so

Outputs that would exceed ``budget_mb`` (hidden states and attentions of a big teacher
over a big split) are not cached: that split's batches go to the live teacher, said once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from distillab.core.config import check_choice, check_number
from distillab.core.entries import atomic_entry, file_lock, verify_entry
from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.models.output import ModelOutput
from distillab.models.topk import TopK, sampled_of, topk_of
from distillab.teachers.ensemble import Teachers

log = logging.getLogger(__name__)

MODES = ("auto", "off", "memory", "disk")
OUTPUTS = "outputs.pt"
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


def _cut(name: str, value: Tensor, seq_len: int | None) -> Tensor:
    """Token positions past ``seq_len`` dropped: [B, T, H] hidden states, [B, heads, T, T] attentions."""
    if seq_len is None or ".logits" in name:
        return value
    if ".attentions." in name:
        return value[:, :, :seq_len, :seq_len]
    return value[:, :seq_len]


def _hash_tensor(digest: Any, tensor: Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")


def weights_fingerprint(teachers: Teachers) -> str:
    digest = hashlib.sha256()
    for name, value in teachers.state_dict().items():
        digest.update(name.encode())
        _hash_tensor(digest, value)
    return digest.hexdigest()


def data_fingerprint(dataset: IndexedTensorDataset, with_domain: bool) -> str:
    digest = hashlib.sha256()
    inputs = dataset.inputs if isinstance(dataset.inputs, dict) else {"": dataset.inputs}
    for name in sorted(inputs):
        digest.update(name.encode())
        _hash_tensor(digest, inputs[name])
    if with_domain:
        _hash_tensor(digest, dataset.extras["domain"])
    return digest.hexdigest()


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


class TeacherOutputCache:
    """Teacher outputs per split, built on first use and looked up by ``index``."""

    def __init__(self, mode: str = "auto", root: str | Path | None = None, budget_mb: float = 2048.0):
        self.mode = check_choice("cache", mode, MODES)
        if self.mode in ("auto", "disk") and root is None:
            raise ValueError("teacher.cache=disk/auto needs a folder (paths.teachers_dir)")
        self.root = Path(root) / "outputs" if root is not None else None
        self.budget_bytes = check_number("cache_budget_mb", budget_mb, low=0) * 2**20
        self._entries: dict[str, dict[str, Tensor]] = {}  # key -> flat outputs
        self._split_keys: dict[str, str | None] = {}  # split -> key of the entry it reads
        self.built: list[str] = []  # keys computed by this process (for reports and tests)
        self.build_seconds: dict[str, float] = {}  # key -> seconds the teacher took to fill it
        self.dense_bytes: dict[str, int] = {}  # key -> what its logits would take kept dense
        self.topk_samples: dict[str, int] = {}  # key -> how many of its top-k slots are sampled

    def key(self, teachers: Teachers, request: SplitRequest) -> str:
        parts = [
            weights_fingerprint(teachers),
            data_fingerprint(request.dataset, teachers.route_by_domain),
            f"hidden={request.hidden_states} attn={request.attentions} routed={teachers.route_by_domain} "
            f"members={len(teachers)} precision={request.precision}",
        ]
        if request.keep is not None and (request.hidden_states or request.attentions):
            parts.append("keep=" + ",".join(sorted(request.keep)))
        if request.topk is not None:
            parts.append(f"topk={request.topk} T={request.topk_temperature}")
            if request.topk_samples:
                parts.append(f"samples={request.topk_samples}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]

    def prepare(self, teachers: Teachers, request: SplitRequest) -> None:
        """Make ``request.split`` answer from the cache, or decide (and say) that it cannot."""
        self._split_keys[request.split] = None
        if self.mode == "off":
            return
        if request.inputs_vary:
            log.info(
                "teacher.cache=%s: the %s inputs are augmented (new every epoch), so the teacher runs on "
                "every %s batch",
                self.mode,
                request.split,
                request.split,
            )
            return
        key = self.key(teachers, request)
        self.topk_samples[key] = request.topk_samples if request.topk is not None else 0
        if key not in self._entries:
            outputs = self._load_or_build(teachers, request, key)
            if outputs is None:
                return
            self._entries[key] = outputs
        self._split_keys[request.split] = key

    def sizes(self) -> dict[str, dict[str, Any]]:
        """Per cached split: bytes held (on disk for disk/auto), what dense logits would take,
        and the build time (None: reused from an earlier run)."""
        out = {}
        for split, key in self._split_keys.items():
            if key is None:
                continue
            entry = self._entries[key]
            out[split] = {
                "bytes": sum(v.numel() * v.element_size() for v in entry.values()),
                "dense_logits_bytes": self.dense_bytes.get(key),
                "build_seconds": self.build_seconds.get(key),
                "topk": int(entry[next(k for k in entry if k.endswith(".topk.indices"))].shape[-1])
                if any(k.endswith(".topk.indices") for k in entry)
                else None,
                "samples": self.topk_samples.get(key, 0),
            }
        return out

    def lookup(self, split: str, index: Tensor, seq_len: int | None = None) -> ModelOutput | list[ModelOutput] | None:
        """The cached outputs of samples ``index`` of ``split``, on ``index``'s device; None if not cached.

        Entries hold every token position; ``seq_len`` cuts hidden states and attention maps
        to a batch cut to its longest sequence (dynamic padding).
        """
        key = self._split_keys.get(split)
        if key is None:
            return None
        entry = self._entries[key]
        rows = index.to(next(iter(entry.values())).device)
        return unflatten(
            {k: _cut(k, v.index_select(0, rows), seq_len).to(index.device, non_blocking=True) for k, v in entry.items()}
        )

    def cached(self, split: str) -> bool:
        return self._split_keys.get(split) is not None

    def summary(self) -> dict[str, Any]:
        """For metrics.json: the mode, which splits were served from the cache, and how many
        entries this run computed (0 when a previous run's were reused)."""
        return {
            "mode": self.mode,
            "cached_splits": sorted(s for s in self._split_keys if self.cached(s)),
            "live_splits": sorted(s for s in self._split_keys if not self.cached(s)),
            "computed_here": len(self.built),
            "splits": self.sizes(),
        }

    # -- building -------------------------------------------------------------------------

    def _load_or_build(self, teachers: Teachers, request: SplitRequest, key: str) -> dict[str, Tensor] | None:
        if self.mode == "memory":
            return self._compute(teachers, request, key)
        assert self.root is not None
        entry = self.root / key
        with file_lock(self.root / f"{key}.lock"):
            if entry.exists():
                problem = verify_entry(entry)
                if problem is None:
                    log.info("teacher outputs for %s: reusing %s", request.split, entry)
                    return self._open(entry, request.device)
                log.warning("cached teacher outputs %s are %s; computing them again", entry, problem)
            outputs = self._compute(teachers, request, key)
            if outputs is None:
                return None
            with atomic_entry(self.root, key, checked=(OUTPUTS,)) as tmp:
                torch.save({k: v.cpu() for k, v in outputs.items()}, tmp / OUTPUTS)
            log.info("teacher outputs for %s written to %s", request.split, entry)
        return self._open(entry, request.device)

    def _open(self, entry: Path, device: torch.device | str) -> dict[str, Tensor]:
        # Memory-mapped: pages are read as rows are looked up, and every process on this
        # machine (DDP ranks, parallel jobs) shares them through the page cache.
        outputs = torch.load(entry / OUTPUTS, mmap=True, weights_only=True, map_location="cpu")
        return outputs if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in outputs.items()}

    def _compute(self, teachers: Teachers, request: SplitRequest, key: str) -> dict[str, Tensor] | None:
        dataset, n = request.dataset, len(request.dataset)
        needs = {"hidden_states": request.hidden_states, "attentions": request.attentions}
        outputs: dict[str, Tensor] = {}
        started, dense = time.perf_counter(), 0
        # Sampled top-k slots: drawn from a generator seeded by the entry's key, so that a
        # rebuild gives the same entry.
        sampled = request.topk is not None and request.topk_samples > 0
        generator = torch.Generator(request.device).manual_seed(int(key[:12], 16)) if sampled else None
        for start in range(0, n, request.batch_size):
            rows = torch.arange(start, min(n, start + request.batch_size))
            batch = move_data_to_device(dataset.batch(rows, full_length=True), request.device)
            with torch.inference_mode(), request.context():
                flat = flatten(teachers(batch, **needs))
            if request.keep is not None:  # only the layers the loss maps: a fraction of all of them
                flat = {k: v for k, v in flat.items() if k.endswith(".logits") or k in request.keep}
            dense += sum(v.numel() * v.element_size() for k, v in flat.items() if k.endswith(".logits"))
            if request.topk is not None:
                flat = to_topk(flat, request.topk, request.topk_temperature, request.topk_samples, generator)
            if not outputs:
                size = sum(v[0].numel() * v.element_size() for v in flat.values()) * n
                if size > self.budget_bytes:
                    log.warning(
                        "teacher outputs for %s would take %.0f MB, over teacher.cache_budget_mb=%g; "
                        "the teacher runs on every %s batch",
                        request.split,
                        size / 2**20,
                        self.budget_bytes / 2**20,
                        request.split,
                    )
                    return None
                outputs = {k: v.new_empty((n, *v.shape[1:])) for k, v in flat.items()}
            for k, v in flat.items():
                outputs[k][start : start + len(v)] = v
        self.built.append(key)
        self.build_seconds[key] = round(time.perf_counter() - started, 2)
        self.dense_bytes[key] = dense
        log.info(
            "teacher outputs for %s computed once: %d samples, %.2f MB",
            request.split,
            n,
            sum(v.numel() * v.element_size() for v in outputs.values()) / 2**20,
        )
        return outputs
