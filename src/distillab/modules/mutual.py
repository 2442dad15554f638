"""Online distillation: Deep Mutual Learning (Zhang et al. 2018), every peer learns every step.

This is the well-defined form of "sharing gradients" between a teacher and a student:
models of different shapes have gradients in different spaces, which cannot be added or
subtracted; what they can share is their predictions, as DML does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from torch import nn

from distillab.data.batch import Batch
from distillab.losses.composite import LossResult
from distillab.losses.mutual import MutualLoss
from distillab.models.output import TransformerClassifier
from distillab.modules.classifier import ClassifierModule
from distillab.modules.optim import OptimizerConfig


class MutualModule(ClassifierModule):
    """Trains ``peers`` together with :class:`MutualLoss`.

    The last peer is ``self.model`` (the student): its val/test metrics are the ones logged
    and monitored; the others are tested on their own afterwards. One optimizer holds every
    peer: each peer's loss reaches only its own weights (peers' predictions are detached),
    so this equals one optimizer per peer stepping at the same time.
    """

    def __init__(
        self,
        peers: list[TransformerClassifier],
        loss: MutualLoss,
        num_classes: int,
        optimizer: OptimizerConfig | None = None,
    ):
        if len(peers) < 2:
            raise ValueError("mutual learning needs at least two models")
        super().__init__(peers[-1], num_classes, optimizer)
        self.peers = nn.ModuleList(peers)
        self.loss = loss

    def training_loss(self, batch: Batch) -> LossResult:
        return self.loss([peer(batch["inputs"]).logits for peer in self.peers], batch)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        # self.model is also peers[-1]; list each parameter once.
        return iter({id(p): p for p in itertools.chain(*(peer.parameters() for peer in self.peers))}.values())
