"""What a teacher's lower precision costs and buys: top-1 agreement of its next-token (or class)
predictions with the float32 model, and the forward throughput of both, on the same batches."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from distillab.core.config import check_choice
from distillab.models.output import TransformerClassifier

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str, key: str = "teacher.precision") -> torch.dtype:
    return DTYPES[check_choice(key, precision, tuple(DTYPES))]


def _mask(batch: dict, logits: Tensor) -> Tensor:
    """Positions that count: labelled ones for sequences (-100 and padding are not), every row else."""
    labels = batch.get("labels")
    if logits.dim() == 3 and labels is not None and labels.shape == logits.shape[:2]:
        return labels != -100
    return torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device)


@torch.inference_mode()
def precision_agreement(
    model: TransformerClassifier, dtype: torch.dtype, batches: Iterable[dict]
) -> dict[str, float | str | int]:
    """Top-1 agreement between ``model`` (float32) and a copy of it cast to ``dtype`` over the
    counted positions of ``batches``; tokens (or rows) per second of each. ``model`` is not changed."""
    low = copy.deepcopy(model).to(dtype).eval()
    was_training = model.training
    model.eval()
    same = total = 0
    seconds = {"fp32": 0.0, "low": 0.0}
    try:
        for batch in batches:
            batch = move_data_to_device(batch, next(model.parameters()).device)
            start = time.perf_counter()
            reference = model(batch["inputs"]).logits
            seconds["fp32"] += time.perf_counter() - start
            start = time.perf_counter()
            cast = low(batch["inputs"]).logits
            seconds["low"] += time.perf_counter() - start
            keep = _mask(batch, reference)
            same += int((reference.argmax(-1) == cast.argmax(-1))[keep].sum())
            total += int(keep.sum())
    finally:
        model.train(was_training)
    name = next(k for k, v in DTYPES.items() if v == dtype)
    return {
        "dtype": name,
        "top1_agreement_with_fp32": same / max(total, 1),
        "positions": total,
        "fp32_items_per_s": total / max(seconds["fp32"], 1e-9),
        f"{name}_items_per_s": total / max(seconds["low"], 1e-9),
    }
