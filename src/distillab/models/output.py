"""The one interface every loss, teacher and module sees: :class:`ModelOutput`.

Logits are [batch, classes] for classifiers, [batch, seq, labels] for token classifiers and
[batch, seq, vocab] for language models.
Hidden states (embeddings first) and attentions (post-softmax) are computed only when a
caller asks for them, because both cost memory and, for attentions, a slower kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from transformers import PreTrainedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderShape:
    """What layer-mapping loss terms and init-from-teacher need to know about a model."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    tokens: int | None = None  # sequence length when fixed by the architecture (ViT patches + CLS)


@dataclass
class ModelOutput:
    logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None

    def apply(self, fn: Callable[[Tensor], Tensor]) -> ModelOutput:
        """The same output with ``fn`` applied to every tensor."""
        layers = lambda t: tuple(map(fn, t)) if t is not None else None  # noqa: E731
        return ModelOutput(fn(self.logits), layers(self.hidden_states), layers(self.attentions))


class TransformerClassifier(nn.Module):
    """Adapter from an HF model to :class:`ModelOutput`.

    ``inputs`` is a tensor (passed as ``input_name``, e.g. ``pixel_values``) or a dict of
    tensors passed as keyword arguments (``input_ids``, ``attention_mask``).
    """

    def __init__(self, model: PreTrainedModel, input_name: str):
        super().__init__()
        self.model = model
        self.input_name = input_name

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def shape(self) -> EncoderShape:
        c = self.model.config
        tokens = None
        if hasattr(c, "image_size") and hasattr(c, "patch_size"):
            tokens = (c.image_size // c.patch_size) ** 2 + 1
        # GPT-2 names its MLP width n_inner (None: 4 x hidden); the other models intermediate_size.
        inner = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size
        return EncoderShape(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, inner, tokens)

    def _use_eager_attention(self) -> None:
        # SDPA kernels do not return attention maps; switch once, the first time they are asked.
        if self.model.config._attn_implementation != "eager":
            log.info("switching %s to eager attention to return attention maps", type(self.model).__name__)
            self.model.set_attn_implementation("eager")

    def forward(
        self, inputs: Tensor | dict[str, Tensor], hidden_states: bool = False, attentions: bool = False
    ) -> ModelOutput:
        kwargs = dict(inputs) if isinstance(inputs, dict) else {self.input_name: inputs}
        if attentions:
            self._use_eager_attention()
        out = self.model(**kwargs, output_hidden_states=hidden_states, output_attentions=attentions)
        return ModelOutput(
            logits=out.logits,
            hidden_states=tuple(out.hidden_states) if hidden_states else None,
            attentions=tuple(out.attentions) if attentions else None,
        )
