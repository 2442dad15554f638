"""A bag-of-words logistic regression on the same text splits: the bar a text teacher must clear.

A Transformer trained from scratch on a few thousand sentences can lose to word counts;
reporting both keeps a reproduction honest. Binary unigram+bigram features with an
L2-regularised logistic regression (the classic linear baseline for sentence classification,
cf. Wang & Manning 2012), C chosen on the validation split.
"""

from __future__ import annotations

import time
from typing import Any

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression


def bag_of_words_baseline(
    texts: dict[str, list[str]], labels: dict[str, list[int]], cs: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
) -> dict[str, Any]:
    """Fit on ``train``, pick C by ``val`` accuracy, report ``test`` accuracy."""
    started = time.perf_counter()
    vectorizer = CountVectorizer(binary=True, ngram_range=(1, 2), min_df=2)
    features = {"train": vectorizer.fit_transform(texts["train"])}
    features.update({s: vectorizer.transform(texts[s]) for s in ("val", "test")})
    best: tuple[float, float, LogisticRegression] | None = None
    for c in cs:
        model = LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"])
        val = model.score(features["val"], labels["val"])
        if best is None or val > best[0]:
            best = (val, c, model)
    val_acc, c, model = best
    return {
        "test": {"acc": float(model.score(features["test"], labels["test"]))},
        "val_acc": float(val_acc),
        "C": c,
        "features": len(vectorizer.vocabulary_),
        "seconds": round(time.perf_counter() - started, 2),
    }
