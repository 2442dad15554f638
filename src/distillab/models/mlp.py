"""Multilayer perceptrons over pixels: the models of Hinton et al. 2015's MNIST experiment.

Not a Transformer, but the reproduction of the paper that named knowledge distillation needs
its own models: a teacher of 2x1200 ReLU units regularised with dropout and a student of
2x800 with none. The model speaks the same :class:`ModelOutput` interface as the HF
adapters, so every loss, teacher wrapper, cache, pruning method and report works on it;
its "hidden states" are the flattened input followed by each hidden layer's activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distillab.core.config import ConfigError, check_int, check_number
from distillab.models.output import EncoderShape, ModelOutput


class MLPClassifier(nn.Module):
    def __init__(
        self, in_features: int, hidden_sizes: Sequence[int], num_labels: int, dropout: float, input_dropout: float
    ):
        super().__init__()
        sizes = [in_features, *hidden_sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.classifier = nn.Linear(sizes[-1], num_labels)
        self.input_dropout, self.dropout = nn.Dropout(input_dropout), nn.Dropout(dropout)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def shape(self) -> EncoderShape:
        # Layer-mapping losses need a single width; "hidden_size" is the last layer's.
        width = self.layers[-1].out_features
        return EncoderShape(num_layers=len(self.layers), hidden_size=width, num_heads=1, intermediate_size=width)

    def forward(self, inputs: Tensor, hidden_states: bool = False, attentions: bool = False) -> ModelOutput:
        if attentions:
            raise ConfigError(
                "loss", "attention transfer", "an MLP has no attention maps; use logit or hidden-state terms"
            )
        h = torch.flatten(inputs, 1)
        states = [h]
        h = self.input_dropout(h)
        for layer in self.layers:
            h = torch.relu(layer(h))
            states.append(h)
            h = self.dropout(h)
        return ModelOutput(self.classifier(h), tuple(states) if hidden_states else None)


def build_mlp(
    num_labels: int,
    image_size: int,
    num_channels: int,
    hidden_sizes: Sequence[int] = (800, 800),
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> MLPClassifier:
    """An MLP ``pixels -> hidden_sizes (ReLU) -> num_labels``; the input shape comes from the data.

    Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network", sec. 3): teacher
    ``hidden_sizes=[1200, 1200]`` with dropout, student ``[800, 800]`` without.
    """
    sizes = list(hidden_sizes) if isinstance(hidden_sizes, Sequence) and not isinstance(hidden_sizes, str) else None
    if not sizes:
        raise ConfigError("hidden_sizes", hidden_sizes, "a non-empty list of layer widths, e.g. [1200, 1200]")
    for i, size in enumerate(sizes):
        check_int(f"hidden_sizes[{i}]", size, low=1)
    check_int("num_labels", num_labels, low=2)
    check_number("dropout", dropout, low=0, high=1, high_open=True)
    check_number("input_dropout", input_dropout, low=0, high=1, high_open=True)
    return MLPClassifier(num_channels * image_size**2, sizes, num_labels, dropout, input_dropout)
