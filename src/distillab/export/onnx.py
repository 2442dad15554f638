"""ONNX export of a float classifier (logits only), and a check of it under onnxruntime.

Uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the
default since torch 2.9); it needs ``onnx`` and ``onnxscript``, and the check needs
``onnxruntime``. The TorchScript exporter (``dynamo=False``) still works in torch 2.13 but
is deprecated and traces Python branches on shapes into constants.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim

from distillab.data.tensor_datamodule import Inputs
from distillab.evaluation.compression import evaluating, logits_of
from distillab.export.quantize import deployable_copy

# One file up to this size; protobuf cannot hold more than 2 GiB, so larger models keep
# their weights in a side file (``<path>.data``) that must travel with the .onnx file.
_EXTERNAL_DATA_BYTES = 1 << 30


def _require(*modules: str) -> None:
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install onnx onnxscript onnxruntime")


def _named_tensors(inputs: Inputs, input_name: str) -> tuple[list[str], list[Tensor]]:
    """Graph input names and tensors: one ``input_name`` tensor, or each key of a dict."""
    if isinstance(inputs, Mapping):
        return list(inputs), list(inputs.values())
    return [input_name], [inputs]


class _LogitsOnly(nn.Module):
    """Positional tensors in, logits out: the signature an ONNX graph can have."""

    def __init__(self, model: nn.Module, names: list[str] | None):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: Tensor) -> Tensor:
        inputs = tensors[0] if self.names is None else dict(zip(self.names, tensors))
        return logits_of(self.model(inputs))


def export_onnx(model: nn.Module, example_inputs: Inputs, path: str | Path) -> Path:
    """Write ``model``'s logits as an ONNX graph with a dynamic batch axis (and, for token
    inputs, a dynamic length); returns the path.

    ``example_inputs`` is a tensor (fed as ``model.input_name``) or a dict of tensors
    (``input_ids``, ``attention_mask``, ...); the graph's inputs carry the same names, and
    its single output is ``logits``. Exported from an eval-mode copy with pruning masks
    folded in, so ``model`` itself is left as it was.
    """
    _require("onnx", "onnxscript")
    input_name = getattr(model, "input_name", "inputs")
    names, tensors = _named_tensors(example_inputs, input_name)
    if tensors[0].shape[0] == 1:
        # torch.export specialises a size-1 dimension to the constant 1: export at batch 2.
        tensors = [torch.cat([t, t]) for t in tensors]
    graph_model = deployable_copy(model)
    wrapped = _LogitsOnly(graph_model, names if isinstance(example_inputs, Mapping) else None).eval()
    batch = Dim("batch", min=1)
    # Token inputs [B, L]: the length is dynamic too, since text batches are cut to their longest
    # sequence (dynamic padding) and a graph fixed at the example's length rejects every other.
    tokens = isinstance(example_inputs, Mapping) and all(t.dim() == 2 for t in tensors)
    if tokens and tensors[0].shape[1] == 1:
        tensors = [torch.cat([t, t], dim=1) for t in tensors]  # as for the batch: not specialised to 1
    axes = {0: batch, 1: Dim("length", min=1)} if tokens else {0: batch}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    param_bytes = sum(p.numel() * p.element_size() for p in graph_model.parameters())
    with warnings.catch_warnings():
        # Every input shares the one batch Dim; the exporter warns that it names that axis once.
        warnings.filterwarnings("ignore", message=r".*shares the same shape constraints")
        torch.onnx.export(
            wrapped,
            tuple(tensors),
            path,
            dynamo=True,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(tuple(axes for _ in tensors),),  # one spec for the *tensors tuple
            external_data=param_bytes > _EXTERNAL_DATA_BYTES,
            verbose=False,
        )
    return path


def onnx_agreement(path: str | Path, model: nn.Module, dataloader: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Compare onnxruntime (CPU) with ``model`` on every batch of ``dataloader``.

    Returns ``top1_agreement`` (fraction of samples whose argmax is the same),
    ``max_abs_diff`` (largest logit difference) and ``samples``.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    input_name = getattr(model, "input_name", "inputs")
    agree = total = 0
    max_diff = 0.0
    with evaluating(model):
        for batch in dataloader:
            names, tensors = _named_tensors(batch["inputs"], input_name)
            feed = {n: t.cpu().numpy() for n, t in zip(names, tensors) if n in wanted}
            if missing := [n for n in wanted if n not in feed]:
                raise ValueError(f"the ONNX graph needs inputs {missing}; the batch has {names}")
            onnx_logits = torch.from_numpy(session.run(["logits"], feed)[0])
            torch_logits = logits_of(model(batch["inputs"])).float().cpu()
            agree += int((onnx_logits.argmax(-1) == torch_logits.argmax(-1)).sum())
            total += torch_logits.argmax(-1).numel()  # samples, or every token position of a token classifier
            max_diff = max(max_diff, float((onnx_logits - torch_logits).abs().max()))
    if not total:
        raise ValueError("the dataloader yielded no samples: nothing to compare")
    return {"top1_agreement": agree / total, "max_abs_diff": max_diff, "samples": total}
