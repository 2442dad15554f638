"""One or several frozen teachers behind one call: ``teachers(batch) -> teacher_out``.

- one teacher: its ModelOutput;
- several: a list of ModelOutputs, one per teacher (loss terms combine or pick them);
- ``route_by_domain``: teacher d answers for the samples of domain d (cross-domain
  distillation), merged back into one ModelOutput in batch order. Each teacher runs only on
  its own samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from distillab.data.batch import Batch
from distillab.data.tensor_datamodule import take_inputs
from distillab.models.output import ModelOutput
from distillab.models.topk import TopK
from distillab.teachers.frozen import FrozenTeacher


def _scatter(parts: list[tuple[Tensor, Tensor]], batch_size: int) -> Tensor:
    first = parts[0][1]
    out = first.new_empty((batch_size, *first.shape[1:]))
    for idx, value in parts:
        out[idx] = value
    return out


class Teachers(nn.Module):
    def __init__(self, teachers: list[FrozenTeacher], route_by_domain: bool = False):
        super().__init__()
        self.members = nn.ModuleList(teachers)
        self.route_by_domain = route_by_domain
        super().train(False)

    def train(self, mode: bool = True) -> Teachers:
        return super().train(False)  # frozen, like each member

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, batch: Batch, hidden_states: bool = False, attentions: bool = False) -> Any:
        if torch.is_inference_mode_enabled():
            return self._forward(batch, hidden_states, attentions)
        with torch.inference_mode():
            out = self._forward(batch, hidden_states, attentions)
        # Tensors made in inference mode cannot be saved for backward, which a loss may need
        # (e.g. cosine similarity to a teacher hidden state); copies can.
        return [o.apply(Tensor.clone) for o in out] if isinstance(out, list) else out.apply(Tensor.clone)

    def _forward(self, batch: Batch, hidden_states: bool, attentions: bool) -> Any:
        inputs = batch["inputs"]
        if not self.route_by_domain:
            outs = [t(inputs, hidden_states, attentions) for t in self.members]
            return outs[0] if len(outs) == 1 else outs
        domain, n = batch["domain"], len(batch["labels"])
        routed = []
        for d, teacher in enumerate(self.members):
            idx = (domain == d).nonzero().squeeze(1)
            if idx.numel():
                routed.append((idx, teacher(take_inputs(inputs, idx), hidden_states, attentions)))

        def merge(field: str) -> Any:
            layers = [getattr(o, field) for _, o in routed]
            if layers[0] is None:
                return None
            return tuple(
                _scatter([(idx, o[i]) for (idx, _), o in zip(routed, layers)], n) for i in range(len(layers[0]))
            )

        logits = _scatter([(idx, o.logits) for idx, o in routed], n)
        return ModelOutput(logits, merge("hidden_states"), merge("attentions"))

    def top1(self, batch: Batch) -> Tensor:
        """The teachers' predicted class: of the routed teacher, or of their mean distribution."""
        return top1(self(batch))


def top1(out: ModelOutput | TopK | list[ModelOutput]) -> Tensor:
    """Predicted class of one teacher's output, or of several teachers' mean distribution (a
    cached top-k teacher: its first id, the most likely token)."""
    if isinstance(out, ModelOutput) and isinstance(out.logits, TopK):
        out = out.logits
    if isinstance(out, TopK):
        return out.indices[..., 0]
    outs = out if isinstance(out, list) else [out]
    return torch.stack([o.logits.float().softmax(-1) for o in outs]).mean(0).argmax(-1)
