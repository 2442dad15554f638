"""What a user of a pretrained language model asks of each model of the run beyond perplexity
(``lm.piqa``, ``lm.answers``, ``lm.responses``, ``lm.speed``): benchmark accuracy, greedy
answers side by side, response perplexity on chat data, inference speed and size."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from distillab.core.config import ConfigError, build, check_int, section
from distillab.data.abilities import TakesTokenizer
from distillab.data.hf_tokenizer import load_hf_tokenizer
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.answers import greedy_answers
from distillab.evaluation.compression import example_inputs, latency_ms
from distillab.evaluation.multiple_choice import score_multiple_choice
from distillab.evaluation.piqa import read_piqa
from distillab.models.output import TransformerClassifier
from distillab.modules import ClassifierModule
from distillab.run.fitting import test_only

log = logging.getLogger(__name__)


def pretrained_tokenizer_of(datamodule: TensorDataModule) -> Any:
    """The HF tokenizer of the pretrained model the data were tokenized for, or None."""
    path = datamodule.tokenizer_file if isinstance(datamodule, TakesTokenizer) else None
    return load_hf_tokenizer(path.parent) if path is not None else None


def response_data(cfg: DictConfig, datamodule: TensorDataModule) -> TensorDataModule | None:
    """``lm.responses`` built on the run's pretrained tokenizer and set up, or None when unset."""
    node = cfg.lm.get("responses")
    if not node:
        return None
    data = build(node, "lm.responses")
    if (
        not isinstance(data, TakesTokenizer)
        or not isinstance(datamodule, TakesTokenizer)
        or not datamodule.tokenizer_file
    ):
        raise ConfigError("lm.responses", node.get("_target_"), "needs chat data and a pretrained model's tokenizer")
    data.use_tokenizer(datamodule.tokenizer_file)
    with section("lm.responses"):
        data.setup()
    return data


def tokens_per_s(model: TransformerClassifier, datamodule: TensorDataModule, batch_size: int, length: int) -> float:
    """Forward tokens per second at ``batch_size`` × ``length`` (the test split's first inputs)."""
    example = example_inputs(datamodule, batch_size)
    example = {k: v[:, :length] for k, v in example.items()}
    ms = latency_ms(model, example, repeats=3, warmup=1, threads=None, budget_s=2.0)
    return batch_size * example["input_ids"].shape[1] / (ms / 1000.0)


def parameter_bytes(model: TransformerClassifier) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def language_model_scores(
    cfg: DictConfig, models: dict[str, TransformerClassifier], datamodule: TensorDataModule
) -> dict[str, dict[str, Any]]:
    """Per role: ``piqa`` {acc, acc_norm, n}, ``response_ppl``, ``tokens_per_s`` {batch: rate},
    ``bytes``, ``answers``; each only where its ``lm.*`` key asks for it."""
    lm = cfg.lm
    out: dict[str, dict[str, Any]] = {role: {"bytes": parameter_bytes(m)} for role, m in models.items()}
    tokenizer = pretrained_tokenizer_of(datamodule)
    piqa, answers = lm.get("piqa") or {}, lm.get("answers") or {}
    questions = list(answers.get("questions") or [])
    if (piqa.get("path") or questions) and tokenizer is None:
        raise ConfigError("lm.piqa.path", piqa.get("path"), "scores a pretrained model: set model.teacher.pretrained")
    if piqa.get("path"):
        items = read_piqa(piqa.path, piqa.get("limit"))
        for role, model in models.items():
            score = score_multiple_choice(model, tokenizer, items, batch_size=piqa.get("batch_size", 8))
            out[role]["piqa"] = {"acc": score.acc, "acc_norm": score.acc_norm, "n": score.n}
            log.info("PIQA %s: acc %.3f, acc_norm %.3f (%d questions)", role, score.acc, score.acc_norm, score.n)
    responses = response_data(cfg, datamodule)
    if responses is not None:
        for role, model in models.items():
            test = test_only(ClassifierModule(model, responses.num_classes, task="language_model"), cfg, responses)
            out[role]["response_ppl"] = test["ppl"]
    if questions:
        new_tokens = check_int("lm.answers.new_tokens", answers.get("new_tokens", 48), low=1)
        for role, model in models.items():
            texts = greedy_answers(model, tokenizer, questions, max_new_tokens=new_tokens)
            out[role]["answers"] = [{"question": q, "answer": a} for q, a in zip(questions, texts)]
    speed = lm.get("speed") or {}
    for batch_size in speed.get("batch_sizes") or []:
        check_int("lm.speed.batch_sizes[]", batch_size, low=1)
        for role, model in models.items():
            rate = tokens_per_s(model, datamodule, batch_size, speed.get("length", 64))
            out[role].setdefault("tokens_per_s", {})[str(batch_size)] = rate
    return out
