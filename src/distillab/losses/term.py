"""The base of every loss term: ``forward(student_out, teacher_out, batch) -> Tensor``, and
what a term declares to the code around it, with defaults that suit a term on logits.

- ``needs``: the model outputs it reads beyond the logits (``hidden_states``,
  ``attentions``), so the models compute only what some term reads;
- ``reads_labels``: it reads every sample's label (refused with few labels, where only a
  term that honours the batch's ``labelled`` may read them);
- ``perturbs``: it reads the student on perturbed inputs (the loss then needs an attack);
- ``teacher_tensors()``: the teacher hidden states/attentions it reads, as the teacher cache
  names them, or None when it reads some without saying which (the cache then keeps all);
- ``setup(student, teachers)``: sees both models' shapes before training (layer maps,
  width projections, checks of teacher indices).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from distillab.core.config import ConfigError
from distillab.data.batch import Batch
from distillab.models.output import EncoderShape, ModelOutput


class LossTerm(nn.Module):
    """One term of a CompositeLoss; subclasses override what they read (module docstring)."""

    needs: frozenset[str] = frozenset()
    reads_labels: bool = False
    perturbs: bool = False

    def teacher_tensors(self) -> frozenset[str] | None:
        """None for a term that reads features without naming them: every layer is kept."""
        return frozenset() if not self.needs else None

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        """Nothing to see by default."""

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: Batch) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")


def check_term(key: str, term: Any) -> LossTerm:
    """``term`` if it is a loss term, else a ConfigError naming ``key``."""
    if not isinstance(term, LossTerm):
        raise ConfigError(
            key,
            type(term).__name__,
            "must be a loss term (a distillab.losses.LossTerm: CrossEntropy, SoftTargetKL, ...)",
        )
    return term
