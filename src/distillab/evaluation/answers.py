"""Greedy answers of chat models to fixed questions, and a Markdown table of them side by side
(teacher, students): what a reader checks first when a student's numbers look good."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillab.core.config import ConfigError, check_int
from distillab.models.generation import generate_batched
from distillab.models.output import TransformerClassifier


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """``question`` as the one user message of a conversation, through the tokenizer's chat
    template with the assistant's turn opened (``add_generation_prompt=True``), as token ids. The
    template writes its special tokens itself, so none are added on encoding (as
    ``apply_chat_template(tokenize=True)`` does)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer.encode(text, add_special_tokens=False))


def greedy_answers(
    model: TransformerClassifier | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> list[str]:
    """Each question's greedy answer (at most ``max_new_tokens`` tokens, ended at the tokenizer's
    end-of-text token), decoded without special tokens and stripped; batched with
    :func:`~distillab.models.generation.generate_batched`, so equal to one question at a time."""
    check_int("max_new_tokens", max_new_tokens, low=1)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "tokenizer.chat_template", None, "greedy answers need a chat model's tokenizer with a template"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("tokenizer.eos_token", None, "needs an end-of-text token to stop answers at")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompts = [chat_prompt_ids(tokenizer, q) for q in questions]
    new = generate_batched(model, prompts, max_new_tokens, eos, pad, batch_size=batch_size)
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in new]


def _cell(text: str) -> str:
    # One table row per question: pipes escaped, line breaks shown as <br>.
    return "<br>".join(text.replace("|", "\\|").splitlines()) or " "


def format_answers(questions: list[str], answers_by_model: dict[str, list[str]]) -> str:
    """A Markdown table: one row per question, one column per model (in the dict's order)."""
    for name, answers in answers_by_model.items():
        if len(answers) != len(questions):
            raise ConfigError(
                f"answers_by_model.{name}", len(answers), f"must hold one answer per question ({len(questions)})"
            )
    names = list(answers_by_model)
    lines = [
        "| question | " + " | ".join(map(_cell, names)) + " |",
        "|---|" + "---|" * len(names),
    ]
    for q, question in enumerate(questions):
        lines.append("| " + " | ".join(_cell(t) for t in [question, *(answers_by_model[n][q] for n in names)]) + " |")
    return "\n".join(lines) + "\n"
