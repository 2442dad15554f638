"""What a language-model run adds to its report: next-token agreement with the teacher for
every model (the student's is also logged while testing; the baseline's only here), training
throughput in tokens/s, and generations from fixed prompts (greedy and sampled, seeded)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.generations import sample_generations
from distillab.models.output import TransformerClassifier


@torch.no_grad()
def next_token_agreement(model: TransformerClassifier, teacher: TransformerClassifier, datamodule: TensorDataModule,
                         split: str = "test") -> float:
    """Share of the split's positions where both models' most likely next token is the same."""
    device = next(model.parameters()).device
    same = total = 0
    modes = model.training, teacher.training
    model.eval(), teacher.eval()
    try:
        for batch in datamodule.eval_loader(split):
            batch = move_data_to_device(batch, device)
            keep = batch.get("mask", torch.ones_like(batch["labels"], dtype=torch.bool))
            agree = model(batch["inputs"]).logits.argmax(-1) == teacher(batch["inputs"]).logits.argmax(-1)
            same += int(agree[keep].sum())
            total += int(keep.sum())
    finally:
        model.train(modes[0]), teacher.train(modes[1])
    return same / max(total, 1)


def language_model_report(models: dict[str, TransformerClassifier], teacher: TransformerClassifier | None,
                          datamodule: TensorDataModule, train_rates: dict[str, float], prompts: list[str],
                          new_tokens: int, temperature: float, seed: int) -> dict[str, dict[str, Any]]:
    """Per model (role -> model): ``agreement`` with ``teacher`` on the test split,
    ``train_tokens_per_s`` (from the training steps' time), and ``generations``."""
    report: dict[str, dict[str, Any]] = {}
    for role, model in models.items():
        entry: dict[str, Any] = {}
        if teacher is not None and model is not teacher:
            entry["agreement"] = next_token_agreement(model, teacher, datamodule)
        if role in train_rates:
            entry["train_tokens_per_s"] = train_rates[role]
        if prompts:
            entry["generations"] = sample_generations(model, datamodule.tokenizer, list(prompts), new_tokens, seed,
                                                      temperature)
        report[role] = entry
    return report
