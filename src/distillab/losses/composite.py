"""A weighted sum of loss terms that also returns each term, for ``train/loss/<name>``.

L = sum_i w_i * L_i(student_out, teacher_out, batch)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from distillab.core.config import ConfigError, check_number, section
from distillab.data.batch import Batch
from distillab.losses.term import LossTerm, check_term
from distillab.models.output import EncoderShape, ModelOutput


@dataclass
class LossResult:
    total: Tensor
    parts: dict[str, Tensor]


class CompositeLoss(nn.Module):
    """Sums ``weights[name] * terms[name](...)``.

    ``needs`` is the union of what the terms ask of the models (``hidden_states``,
    ``attentions``), so models compute only what some term reads. Terms with learned
    parameters (projections) are submodules here and so are optimised with the student.
    """

    terms: nn.ModuleDict  # name -> LossTerm

    def __init__(self, terms: dict[str, LossTerm], weights: dict[str, float]):
        super().__init__()
        if set(terms) != set(weights):
            wrong = [f"no weight for the term {k}" for k in sorted(set(terms) - set(weights))]
            wrong += [f"no term named {k}" for k in sorted(set(weights) - set(terms))]
            raise ConfigError("weights", dict(weights), f"{'; '.join(wrong)} (the terms: {', '.join(sorted(terms))})")
        self.terms = nn.ModuleDict({k: check_term(f"terms.{k}", term) for k, term in terms.items()})
        self.weights = {k: check_number(f"weights.{k}", w, low=0) for k, w in weights.items()}

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(t.needs for t in self.terms.values()))

    def teacher_tensors(self) -> frozenset[str] | None:
        """The teacher hidden states/attentions the terms read (cache names), or None when a
        term that reads features does not say which (then every layer is kept)."""
        wanted: set[str] = set()
        for term in self.terms.values():
            kept = term.teacher_tensors()
            if kept is None:
                return None
            wanted |= kept
        return frozenset(wanted)

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        """Let terms that map layers or project widths see both models' shapes (before the
        optimizer is built, so that new projections are optimised with the student)."""
        for name, term in self.terms.items():
            with section(f"terms.{name}"):
                term.setup(student, teachers)

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: Batch) -> LossResult:
        parts = {name: term(student_out, teacher_out, batch) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return LossResult(total, parts)
