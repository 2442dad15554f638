"""Compression report: parameters, non-zero parameters, size on disk, latency, accuracy.

Every number is measured on the model as it is, not derived from a setting:

- pruned weights count through their effective value (``weight_orig * weight_mask`` while
  ``torch.nn.utils.prune`` masks are attached), so the report counts real zeros;
- dynamically quantized int8 Linear layers keep their weights in packed params, not in
  ``parameters()``; they are unpacked and counted like any other weight;
- ``compressed_bytes`` is the saved state dict after zlib level 9. A dense float tensor
  barely compresses, while runs of zeros do, so this is where unstructured sparsity shows
  up on disk without a sparse storage format.
"""

from __future__ import annotations

import io
import math
import statistics
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from distillab.core.config import check_int, check_number
from distillab.data.tensor_datamodule import Inputs, take_inputs
from distillab.evaluation.entity_metrics import IGNORE_INDEX

COLUMNS = (
    ("name", "model"),
    ("params", "params"),
    ("nonzero_params", "non-zero"),
    ("dense_bytes", "bytes"),
    ("compressed_bytes", "bytes (zlib)"),
    ("latency_ms_b1", "ms (b=1)"),
    ("latency_ms_b64", "ms (b=64)"),
    ("speedup_b1", "speed-up (b=1)"),
    ("speedup_b64", "speed-up (b=64)"),
    ("test_acc", "test acc"),
    ("retention", "retention"),
)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd inside the block; the caller's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def logits_of(output: Any) -> Tensor:
    """Logits from a :class:`ModelOutput` (or anything with ``.logits``) or a bare tensor."""
    return output if isinstance(output, Tensor) else output.logits


def _is_packed_linear(module: nn.Module) -> bool:
    # Duck-typed rather than isinstance(torch.ao.nn.quantized...): that namespace is deprecated,
    # and every packed quantized Linear (dynamic or static) exposes weight()/bias() this way.
    return hasattr(module, "_packed_params") and callable(getattr(module, "weight", None))


def _effective_tensors(model: nn.Module) -> Iterator[Tensor]:
    """Every weight the forward uses, once: effective pruned weights, unpacked int8 weights."""
    seen: set[int] = set()
    for module in model.modules():
        if _is_packed_linear(module):
            # dequantize(): a zero weight is stored as the zero point, not necessarily as int 0.
            yield module.weight().dequantize()
            if module.bias() is not None:
                yield module.bias().detach()
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights are stored once
                continue
            seen.add(id(param))
            mask = getattr(module, f"{name[:-5]}_mask", None) if name.endswith("_orig") else None
            # Recomputed from orig * mask: a pruned module's ``weight`` attribute is refreshed
            # only at forward time and is stale right after an optimizer step.
            yield param.detach() * mask if mask is not None else param.detach()


def count_parameters(model: nn.Module) -> int:
    """Number of weights, including int8 weights packed inside quantized Linear layers."""
    return sum(t.numel() for t in _effective_tensors(model))


def count_nonzero(model: nn.Module) -> int:
    """Number of weights that are not exactly zero in what the forward actually uses."""
    return sum(int(torch.count_nonzero(t)) for t in _effective_tensors(model))


def effective_state_dict(model: nn.Module) -> dict[str, Any]:
    """The state dict with each ``<x>_orig``/``<x>_mask`` pair folded into ``<x>``.

    That is what the model saves once its masks are made permanent; measuring the masked
    form instead would count every pruned tensor twice and none of its zeros.
    """
    state = model.state_dict()
    out: dict[str, Any] = {}
    for key, value in state.items():
        base = key[:-5]
        if key.endswith("_mask") and f"{base}_orig" in state:
            continue
        if key.endswith("_orig") and f"{base}_mask" in state:
            out[base] = value * state[f"{base}_mask"]
        else:
            out[key] = value
    return out


def size_on_disk(model: nn.Module) -> dict[str, int]:
    """Bytes of ``torch.save(state_dict)`` and of the same bytes after zlib level 9."""
    buffer = io.BytesIO()
    torch.save(effective_state_dict(model), buffer)
    raw = buffer.getvalue()
    return {"dense_bytes": len(raw), "compressed_bytes": len(zlib.compress(raw, 9))}


def _concat(parts: Sequence[Inputs]) -> Inputs:
    if isinstance(parts[0], Mapping):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(list(parts))


def _num_rows(inputs: Inputs) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)


def example_inputs(datamodule: Any, batch_size: int) -> Inputs:
    """The first ``batch_size`` inputs of the test split (a tensor or a dict of tensors).

    A test split smaller than ``batch_size`` is cycled: latency depends on the shape of the
    batch, not on whether its samples are distinct.
    """
    check_int("batch_size", batch_size, low=1)
    parts, rows = [], 0
    for batch in datamodule.eval_loader("test"):
        parts.append(batch["inputs"])
        rows += _num_rows(batch["inputs"])
        if rows >= batch_size:
            break
    if not rows:
        raise ValueError("the test split is empty: no inputs to time the model on")
    inputs = _concat(parts)
    return take_inputs(inputs, torch.arange(batch_size) % _num_rows(inputs))


def latency_ms(
    model: nn.Module,
    example: Inputs,
    repeats: int = 20,
    warmup: int = 5,
    threads: int | None = 1,
    budget_s: float = 3.0,
) -> float:
    """Median CPU wall time of one forward on ``example``, in milliseconds.

    Warm-up calls are not timed (first calls allocate and pick kernels); the median is
    robust to the odd slow call from other work on the machine. ``threads`` (torch intra-op
    threads, restored afterwards; None keeps the current setting) defaults to 1: with more
    threads than idle cores, OpenMP barriers make a forward two orders of magnitude slower, so
    multi-threaded numbers say more about the machine's load than about the model.
    ``budget_s`` bounds the time spent on a slow model: warm-up stops after half of it (one
    call at least), timing after all of it (three calls at least), so a 22M-parameter BERT at
    batch 64 costs seconds, not half a minute, and a small model still gets every repeat.
    """
    check_int("repeats", repeats, low=1)
    check_int("warmup", warmup, low=0)
    check_number("budget_s", budget_s, low=0, low_open=True)
    if threads is not None:
        check_int("threads", threads, low=1)
    before = torch.get_num_threads()
    times: list[float] = []
    try:
        torch.set_num_threads(threads or before)
        with evaluating(model):
            started = time.perf_counter()
            for _ in range(warmup):
                model(example)
                if time.perf_counter() - started > budget_s / 2:
                    break
            started = time.perf_counter()
            while len(times) < repeats and (len(times) < 3 or time.perf_counter() - started < budget_s):
                start = time.perf_counter()
                model(example)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times) * 1000.0


def accuracy(model: nn.Module, dataloader: Iterable[dict[str, Any]]) -> float:
    """Top-1 accuracy over every batch of ``dataloader`` (micro: each sample counts once; with a
    label per token, each labelled token, as the token classification metrics count words)."""
    correct = total = 0
    with evaluating(model):
        for batch in dataloader:
            predicted, labels = logits_of(model(batch["inputs"])).argmax(-1), batch["labels"]
            scored = labels != IGNORE_INDEX
            correct += int((predicted == labels)[scored].sum())
            total += int(scored.sum())
    if not total:
        raise ValueError("the dataloader yielded no samples: accuracy is undefined")
    return correct / total


def compression_row(name: str, model: nn.Module, datamodule: Any, reference_acc: float | None = None) -> dict[str, Any]:
    """One row of the compression report; ``retention`` is test_acc / reference_acc."""
    if reference_acc is not None:
        check_number("reference_acc", reference_acc, low=0, high=1, low_open=True)
    acc = accuracy(model, datamodule.eval_loader("test"))
    return {
        "name": name,
        "params": count_parameters(model),
        "nonzero_params": count_nonzero(model),
        **size_on_disk(model),
        "latency_ms_b1": latency_ms(model, example_inputs(datamodule, 1)),
        "latency_ms_b64": latency_ms(model, example_inputs(datamodule, 64)),
        "test_acc": acc,
        "retention": None if reference_acc is None else acc / reference_acc,
    }


def add_speedups(rows: Mapping[str, dict[str, Any]], reference: str) -> None:
    """``speedup_b1``/``speedup_b64``: the ``reference`` row's latency over each row's (2.0: twice as fast)."""
    base = rows[reference]
    for row in rows.values():
        for b in ("b1", "b64"):
            row[f"speedup_{b}"] = base[f"latency_ms_{b}"] / row[f"latency_ms_{b}"]


def format_cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "name":
        return str(value).replace("|", "\\|")  # a pipe would split the Markdown cell
    if isinstance(value, int):
        return f"{value:,}"
    if key.startswith(("latency", "speedup")):
        return f"{value:.2f}"
    return f"{value:.4f}"


def compression_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`compression_row` rows, one line per model."""
    if not rows:
        raise ValueError("compression_markdown needs at least one row")
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if key == "name" else "---:" for key, _ in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(key, row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
