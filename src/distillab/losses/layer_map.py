"""Which student layer learns from which teacher layer.

Layers are numbered 1..L (hidden-state index 0 is the embeddings output):

- ``uniform``: student layer i <- teacher layer ceil(i * L_t / L_s), i = 1..L_s
  (TinyBERT's g(m) = m * L_t / L_s; the ceiling keeps it in 1..L_t when the student is
  the deeper one, and maps last to last);
- ``last``: the last layer of each;
- an explicit list of ``[student, teacher]`` pairs, e.g. ``[[1, 2], [2, 4]]``, where 0 may
  name the embeddings for hidden-state terms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from distillab.core.config import ConfigError


def layer_pairs(
    spec: Any, student_layers: int, teacher_layers: int, allow_embeddings: bool = True
) -> list[tuple[int, int]]:
    if spec == "uniform":
        return [(i, -(-i * teacher_layers // student_layers)) for i in range(1, student_layers + 1)]
    if spec == "last":
        return [(student_layers, teacher_layers)]
    low = 0 if allow_embeddings else 1
    allowed = (
        f"must be 'uniform', 'last' or a list of [student, teacher] layer pairs with student in "
        f"{low}..{student_layers} and teacher in {low}..{teacher_layers}"
    )
    if isinstance(spec, str) or not isinstance(spec, Iterable):
        raise ConfigError("layers", spec, allowed)
    pairs = []
    for pair in spec:
        try:
            s, t = (int(v) for v in pair)
        except (TypeError, ValueError):
            raise ConfigError("layers", _plain(spec), allowed) from None
        if not low <= s <= student_layers:
            raise ConfigError(
                "layers",
                _plain(spec),
                f"[{s}, {t}] names student layer {s}, which is not in {low}..{student_layers}; {allowed}",
            )
        if not low <= t <= teacher_layers:
            raise ConfigError(
                "layers",
                _plain(spec),
                f"[{s}, {t}] names teacher layer {t}, which is not in {low}..{teacher_layers}; {allowed}",
            )
        pairs.append((s, t))
    if not pairs:
        raise ConfigError("layers", _plain(spec), allowed)
    return pairs


def _plain(spec: Any) -> Any:
    return [list(p) if isinstance(p, Iterable) else p for p in spec]
