"""A teacher that cannot change: eval mode, no gradients, whatever Lightning does to its parent."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distillab.models.output import ModelOutput, TransformerClassifier


class FrozenTeacher(nn.Module):
    """Wraps a trained model so that distillation only reads it.

    ``requires_grad`` is off for every weight, dropout stays off (``train()`` is a no-op:
    Lightning calls ``module.train()`` on the whole LightningModule each epoch), and the
    forward runs without autograd (``inference_mode``: no version counters either).
    """

    def __init__(self, model: TransformerClassifier):
        super().__init__()
        self.model = model.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @property
    def num_parameters(self) -> int:
        return self.model.num_parameters

    @torch.inference_mode()
    def forward(
        self, inputs: Tensor | dict[str, Tensor], hidden_states: bool = False, attentions: bool = False
    ) -> ModelOutput:
        return self.model(inputs, hidden_states=hidden_states, attentions=attentions)
