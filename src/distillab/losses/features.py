"""Intermediate-representation terms: hidden states and attention maps, layer to layer.

Pure functions compare one pair of layers; the two modules map layers (layer_map.py),
project widths and average over the mapped pairs. Hidden states are [batch, seq, width];
attentions are [batch, heads, seq, seq], post-softmax. ``mask`` ([batch, seq], true for
real tokens) keeps padding out of the average.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillab.core.config import ConfigError, check_choice, check_int
from distillab.data.batch import Batch
from distillab.losses.layer_map import layer_pairs
from distillab.losses.reduce import masked_mean, upcast
from distillab.losses.teacher_targets import TeacherOut
from distillab.losses.term import LossTerm
from distillab.models.output import EncoderShape, ModelOutput


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """FitNets (Romero et al. 2015) / TinyBERT (Jiao et al. 2020): mean_d (W h_s - h_t)_d^2 per token."""
    return masked_mean((student - teacher).pow(2).mean(-1), mask)


def hidden_cosine(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """DistilBERT (Sanh et al. 2019) cosine embedding loss: 1 - cos(h_s, h_t) per token."""
    return masked_mean(1 - F.cosine_similarity(student, teacher, dim=-1), mask)


def _same_heads(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    # Different head counts have no head-to-head correspondence: compare the head-averaged
    # maps, which are still row-stochastic, so the KL below stays a KL between distributions.
    if student.shape[1] != teacher.shape[1]:
        return student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    return student, teacher


def attention_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """TinyBERT (Jiao et al. 2020): (1/h) sum_heads MSE(A_s, A_t), averaged over real query rows."""
    student, teacher = _same_heads(student, teacher)
    per_query = (student - teacher).pow(2).mean(-1).mean(1)  # [batch, seq]
    return masked_mean(per_query, mask)


def attention_kl(student: Tensor, teacher: Tensor, mask: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """MiniLM (Wang et al. 2020): KL(A_t || A_s) per query row, averaged over heads and real queries.

    KL = sum_k A_t[k] (log A_t[k] - log A_s[k])
    """
    student, teacher = _same_heads(student, teacher)
    kl = (torch.xlogy(teacher, teacher) - teacher * torch.log(student.clamp_min(eps))).sum(-1)  # [b, h, q]
    return masked_mean(kl.mean(1), mask)


def token_mask(batch: Batch) -> Tensor | None:
    inputs = batch["inputs"]
    return inputs.get("attention_mask") if isinstance(inputs, dict) else None


class _LayerTerm(LossTerm):
    """Layer mapping shared by the hidden-state and attention terms; ``setup`` sees both models."""

    allow_embeddings = True

    def __init__(self, layers: Any = "uniform", teacher: int = 0):
        super().__init__()
        self.layers = layers
        self.teacher = check_int("teacher", teacher, low=0)
        self.pairs: list[tuple[int, int]] = []

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        if self.teacher >= len(teachers):
            raise ConfigError("teacher", self.teacher, f"must be < the number of teachers ({len(teachers)})")
        teacher = teachers[self.teacher]
        if student.tokens and teacher.tokens and student.tokens != teacher.tokens:
            raise ConfigError(
                "layers",
                self.layers,
                f"needs the same sequence length in student ({student.tokens} "
                f"tokens) and teacher ({teacher.tokens}); use the same patch_size",
            )
        self.pairs = layer_pairs(self.layers, student.num_layers, teacher.num_layers, self.allow_embeddings)

    def teacher_tensors(self) -> frozenset[str]:
        """The teacher layers this term reads, named as the teacher cache names them."""
        field = next(iter(self.needs))
        offset = 1 if field == "attentions" else 0  # attention maps have no embedding layer
        return frozenset(f"{self.teacher}.{field}.{j - offset}" for _, j in self.pairs)

    def teacher_output(self, teacher_out: TeacherOut) -> ModelOutput:
        return teacher_out if isinstance(teacher_out, ModelOutput) else teacher_out[self.teacher]


class HiddenStateLoss(_LayerTerm):
    """Hidden-state transfer over mapped layers, ``metric=mse`` (FitNets, TinyBERT) or
    ``metric=cosine`` (DistilBERT):

        L = (1/|P|) sum_{(i, j) in P} d(W_i h_s^i, h_t^j)

    W_i is a learned linear projection (student width -> teacher width) when the widths
    differ, and the identity when they match. The projections belong to the loss, are
    optimised with the student and saved in its checkpoint.
    """

    needs = frozenset({"hidden_states"})
    METRICS = {"mse": hidden_mse, "cosine": hidden_cosine}

    def __init__(self, metric: str = "mse", layers: Any = "uniform", teacher: int = 0):
        super().__init__(layers, teacher)
        self.metric = check_choice("metric", metric, self.METRICS)
        self.projections = nn.ModuleList()

    def setup(self, student: EncoderShape, teachers: Sequence[EncoderShape]) -> None:
        super().setup(student, teachers)
        width_s, width_t = student.hidden_size, teachers[self.teacher].hidden_size
        self.projections = nn.ModuleList(
            nn.Linear(width_s, width_t) if width_s != width_t else nn.Identity() for _ in self.pairs
        )

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        if not self.pairs:
            raise RuntimeError("HiddenStateLoss.setup() was not called with the student and teacher shapes")
        teacher_states, mask = self.teacher_output(teacher_out).hidden_states, token_mask(batch)
        distance = self.METRICS[self.metric]
        losses = [
            distance(proj(student_out.hidden_states[i]), upcast(teacher_states[j]), mask)
            for proj, (i, j) in zip(self.projections, self.pairs)
        ]
        return torch.stack(losses).mean()


class AttentionLoss(_LayerTerm):
    """Attention transfer over mapped layers, ``metric=mse`` (TinyBERT) or ``metric=kl`` (MiniLM):

        L = (1/|P|) sum_{(i, j) in P} d(A_s^i, A_t^j)

    Heads are compared one to one when the counts match, else as head-averaged maps.
    """

    needs = frozenset({"attentions"})
    allow_embeddings = False
    METRICS = {"mse": attention_mse, "kl": attention_kl}

    def __init__(self, metric: str = "mse", layers: Any = "uniform", teacher: int = 0):
        super().__init__(layers, teacher)
        self.metric = check_choice("metric", metric, self.METRICS)

    def forward(self, student_out: ModelOutput, teacher_out: TeacherOut, batch: Batch) -> Tensor:
        if not self.pairs:
            raise RuntimeError("AttentionLoss.setup() was not called with the student and teacher shapes")
        teacher_maps, mask = self.teacher_output(teacher_out).attentions, token_mask(batch)
        distance = self.METRICS[self.metric]
        losses = [distance(student_out.attentions[i - 1], upcast(teacher_maps[j - 1]), mask) for i, j in self.pairs]
        return torch.stack(losses).mean()
