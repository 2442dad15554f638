"""Plain-Python maths that loss tests compare against (no torch, so no shared bugs)."""

import math


def softmax_by_hand(z: list[float], T: float = 1.0) -> list[float]:
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def kl_by_hand(p: list[float], q: list[float]) -> float:
    """KL(p || q), with 0 log 0 = 0."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def entropy_by_hand(p: list[float]) -> float:
    return -sum(pi * math.log(pi) for pi in p if pi > 0)
