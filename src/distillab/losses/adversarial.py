"""Loss terms on adversarially perturbed inputs: adversarial training and ARD.

The module that trains the student perturbs each batch once, with the loss's ``attack``
(an L∞ PGD or FGSM on the student's cross-entropy), and hands the student's output on the
perturbed inputs to the terms as ``batch["perturbed_out"]``; :class:`OnPerturbed` makes any
term read it instead of the output on the clean inputs. Two losses follow:

- Adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
  Adversarial Attacks"), ``loss=adversarial``:

      L = (1 − w)·CE(S(x), y) + w·CE(S(x + δ*), y),   δ* = argmax_{‖δ‖∞ ≤ ε} CE(S(x + δ), y)

- Adversarially robust distillation (Goldblum et al. 2020, "Adversarially Robust
  Distillation"), ``loss=ard``: the student on perturbed inputs matches the teacher's soft
  targets on the *clean* inputs (so the teacher's outputs come from the cache):

      L = α·CE(S(x), y) + (1 − α)·T²·KL(softmax(T(x)/T) ‖ softmax(S(x + δ*)/T))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from distillab.core.config import ConfigError
from distillab.data.batch import Batch
from distillab.losses.composite import CompositeLoss
from distillab.losses.term import LossTerm, check_term
from distillab.models.output import EncoderShape, ModelOutput

PERTURBED = "perturbed_out"


class OnPerturbed(LossTerm):
    """``term`` computed on the student's output for the perturbed inputs of the batch; it
    declares what ``term`` declares (it reads the same outputs, labels and teacher tensors)."""

    perturbs = True

    def __init__(self, term: LossTerm):
        super().__init__()
        self.term = check_term("term", term)

    @property
    def needs(self) -> frozenset[str]:
        return self.term.needs

    @property
    def reads_labels(self) -> bool:
        return self.term.reads_labels

    def teacher_tensors(self) -> frozenset[str] | None:
        return self.term.teacher_tensors()

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        self.term.setup(student, teachers)

    def forward(self, student_out: ModelOutput, teacher_out: Any, batch: Batch) -> Tensor:
        if PERTURBED not in batch:
            raise RuntimeError("OnPerturbed needs batch['perturbed_out']: the loss must have an attack")
        return self.term(batch[PERTURBED], teacher_out, batch)


class AdversarialLoss(CompositeLoss):
    """A CompositeLoss with an ``attack`` (distillab.robustness.Attack) that its
    :class:`OnPerturbed` terms read; see the module docstring for the two losses built from it."""

    def __init__(self, terms: dict[str, LossTerm], weights: dict[str, float], attack: Any):
        super().__init__(terms, weights)
        if attack is None:
            raise ConfigError("attack", None, "a loss with terms on perturbed inputs needs an attack (fgsm or pgd)")
        if not any(t.perturbs for t in self.terms.values()):
            raise ConfigError(
                "terms", sorted(self.terms), "has no term on perturbed inputs (OnPerturbed): use a plain loss instead"
            )
        self.attack = attack  # a distillab.robustness.Attack (robustness sits above losses: not named here)
