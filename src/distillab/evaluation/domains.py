"""Accuracy per domain, for data whose batches carry a ``domain`` id."""

from __future__ import annotations

import torch

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.models.output import TransformerClassifier


@torch.no_grad()
def accuracy_by_domain(
    model: TransformerClassifier, datamodule: TensorDataModule, split: str = "test"
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    correct = torch.zeros(datamodule.num_domains)
    total = torch.zeros(datamodule.num_domains)
    device = next(model.parameters()).device
    loader = datamodule.eval_loader(split)
    for batch in loader:
        inputs = (
            batch["inputs"].to(device)
            if torch.is_tensor(batch["inputs"])
            else {k: v.to(device) for k, v in batch["inputs"].items()}
        )
        hit = (model(inputs).logits.argmax(-1).cpu() == batch["labels"]).float()
        correct.index_add_(0, batch["domain"], hit)
        total.index_add_(0, batch["domain"], torch.ones_like(hit))
    model.train(was_training)
    return {str(d): (correct[d] / total[d]).item() for d in range(datamodule.num_domains) if total[d] > 0}
