"""What a language-model run adds to its report: next-token agreement with the teacher for
every model (the student's is also logged while testing; the baseline's only here), training
throughput in tokens/s, and generations from fixed prompts (greedy and sampled, seeded)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.models.generation import sample_generations
from distillab.models.output import TransformerClassifier


@torch.no_grad()
def next_token_agreement(
    models: dict[str, TransformerClassifier],
    teacher: TransformerClassifier,
    datamodule: TensorDataModule,
    split: str = "test",
) -> dict[str, float]:
    """Per model, the share of the split's positions where its most likely next token is the
    teacher's; the teacher runs once per batch for all of them."""
    device = next(teacher.parameters()).device
    same, total = dict.fromkeys(models, 0), 0
    modes = {m: m.training for m in (teacher, *models.values())}
    for m in modes:
        m.eval()
    try:
        for batch in datamodule.eval_loader(split):
            batch = move_data_to_device(batch, device)
            keep = batch.get("mask", batch["labels"] != -100)  # chat data: responses only
            top = teacher(batch["inputs"]).logits.argmax(-1)
            for role, model in models.items():
                same[role] += int((model(batch["inputs"]).logits.argmax(-1) == top)[keep].sum())
            total += int(keep.sum())
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return {role: n / max(total, 1) for role, n in same.items()}


def language_model_report(
    models: dict[str, TransformerClassifier],
    teacher: TransformerClassifier | None,
    datamodule: TensorDataModule,
    train_rates: dict[str, float],
    prompts: list[str],
    new_tokens: int,
    temperature: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Per model (role -> model): ``agreement`` with ``teacher`` on the test split,
    ``train_tokens_per_s`` (from the training steps' time), and ``generations``."""
    report: dict[str, dict[str, Any]] = {}
    students = {role: m for role, m in models.items() if m is not teacher}
    agreement = next_token_agreement(students, teacher, datamodule) if teacher is not None and students else {}
    for role, model in models.items():
        entry: dict[str, Any] = {}
        if role in agreement:
            entry["agreement"] = agreement[role]
        if role in train_rates:
            entry["train_tokens_per_s"] = train_rates[role]
        if prompts:
            entry["generations"] = sample_generations(
                model, datamodule.tokenizer, list(prompts), new_tokens, seed, temperature
            )
        report[role] = entry
    return report
