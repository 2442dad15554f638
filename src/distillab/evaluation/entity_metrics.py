"""Token classification metrics: entity-level precision, recall and F1 by seqeval, and token
accuracy over the words (torchmetrics, so they sync under DDP like the classification metrics).

An entity is a chunk of BIO tags (``B-person I-person``), read as conlleval reads them
(seqeval's default mode: an ``I-x`` after ``O`` starts a chunk too), the score the CoNLL and
WNUT shared tasks report (Tjong Kim Sang & De Meulder 2003; Derczynski et al. 2017):

    P = |predicted ∩ gold| / |predicted|,   R = |predicted ∩ gold| / |gold|,   F1 = 2PR / (P + R)

micro-averaged over entity types, a predicted entity counting only when its type and both ends
match a gold one. seqeval computes them (Nakayama 2018, https://github.com/chakki-works/seqeval);
nothing of it is rewritten here. Each word is read at the one position that carries its tag
(its first sub-token, data/text/token_labels.py): positions labelled -100 are neither predicted
nor scored. ``acc`` is the share of words whose tag is right (mostly ``O``: F1 is the figure).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

IGNORE_INDEX = -100  # a position that carries no word's tag
SCORES = {"f1": f1_score, "precision": precision_score, "recall": recall_score}


class _TaggedWords(Metric):
    """The predicted and gold tag of every word of the split, with each sentence's word count,
    accumulated (and gathered across DDP ranks) so that entities are scored over the whole split."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, label_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.label_names = list(label_names) if label_names is not None else None
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("gold", default=[], dist_reduce_fx="cat")
        self.add_state("words", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """``logits`` [B, L, C] and ``labels`` [B, L] (-100 where no word starts)."""
        keep = labels != IGNORE_INDEX
        self.predicted.append(logits.argmax(-1)[keep])
        self.gold.append(labels[keep])
        self.words.append(keep.sum(1))

    def tagged(self) -> tuple[Tensor, Tensor, Tensor]:
        """(predicted, gold) tag ids of every word, and each sentence's number of words."""
        if not self.words:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty
        return dim_zero_cat(self.predicted), dim_zero_cat(self.gold), dim_zero_cat(self.words)

    def sentences(self) -> tuple[list[list[str]], list[list[str]]]:
        """Gold and predicted tags as seqeval reads them: one list of tag names per sentence."""
        if self.label_names is None:
            raise RuntimeError("entity metrics need the tag names: pass label_names, or set them with name_tags")
        predicted, gold, words = self.tagged()
        names = self.label_names
        as_names = lambda ids: [[names[i] for i in part.tolist()] for part in ids.split(words.tolist())]  # noqa: E731
        return as_names(gold), as_names(predicted)


class EntityScore(_TaggedWords):
    """One of seqeval's entity-level ``f1``, ``precision`` or ``recall`` (micro), 0 when undefined
    (no entity predicted, or none in the split)."""

    def __init__(self, score: str, label_names: Sequence[str] | None = None) -> None:
        super().__init__(label_names)
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, not {score!r}")
        self.score = score

    def compute(self) -> Tensor:
        gold, predicted = self.sentences()
        return torch.tensor(float(SCORES[self.score](gold, predicted, zero_division=0)))


class WordAccuracy(_TaggedWords):
    """Share of words whose predicted tag is the gold one."""

    def compute(self) -> Tensor:
        predicted, gold, _ = self.tagged()
        return (predicted == gold).float().mean() if len(gold) else torch.tensor(0.0)


def token_classification_metrics(prefix: str, label_names: Sequence[str] | None = None) -> MetricCollection:
    """``acc`` (words), ``f1``, ``precision``, ``recall`` (entities), logged as ``<prefix><name>``:
    the names of the classification metrics, so that reports, checkpoints' ``monitor`` and
    metrics.json read them alike."""
    return MetricCollection(
        {
            "acc": WordAccuracy(label_names),
            **{score: EntityScore(score, label_names) for score in SCORES},
        },
        prefix=prefix,
    )


def name_tags(metrics: MetricCollection, label_names: Sequence[str]) -> None:
    """Give the metrics of :func:`token_classification_metrics` the tag names, in id order."""
    for metric in metrics.values():
        if isinstance(metric, _TaggedWords):
            metric.label_names = list(label_names)
