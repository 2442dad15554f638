"""Perplexity and next-token accuracy by hand; the step timer's figures."""

import math

import torch

from distillab.evaluation.lm_metrics import (
    IGNORE,
    NextTokenAccuracy,
    Perplexity,
    language_model_metrics,
    masked_labels,
)


def test_perplexity_is_exp_of_the_mean_nll_over_kept_positions_of_the_whole_split():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]]]))
    labels = torch.tensor([[0, 1], [2, 2]])
    mask = torch.tensor([[True, True], [True, False]])
    ppl = Perplexity()
    ppl.update(logits[:1], masked_labels(labels[:1], mask[:1]))  # two batches: the split's mean, not the batches'
    ppl.update(logits[1:], masked_labels(labels[1:], mask[1:]))
    nll = -(math.log(0.5) + math.log(0.8) + math.log(1 / 3)) / 3
    assert math.isclose(float(ppl.compute()), math.exp(nll), rel_tol=1e-6)


def test_next_token_accuracy_skips_ignored_positions():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])
    labels = torch.tensor([[0, 0, IGNORE]])
    acc = NextTokenAccuracy()
    acc.update(logits, labels)
    assert float(acc.compute()) == 0.5


def test_a_uniform_model_has_the_vocabulary_size_as_perplexity():
    metrics = language_model_metrics("test/")
    metrics.update(torch.zeros(2, 5, 7), torch.randint(0, 7, (2, 5)))
    out = metrics.compute()
    assert math.isclose(float(out["test/ppl"]), 7.0, rel_tol=1e-5)
