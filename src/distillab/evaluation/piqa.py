"""PIQA (Bisk et al., "PIQA: Reasoning about Physical Commonsense in Natural Language", AAAI 2020)
as multiple-choice questions, with lm-evaluation-harness's ``piqa`` prompt.

The harness's task: ``doc_to_text = "Question: {goal}\\nAnswer:"``, ``doc_to_choice = [sol1, sol2]``,
``target_delimiter = " "`` (each answer is scored as ``" " + sol``), the label from
``valid-labels.lst`` (0: sol1, 1: sol2). The test split has no public labels, so the
validation split (1,838 questions) is the one reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distillab.core.config import ConfigError

KEY = "evaluation.piqa.path"
QUESTIONS, LABELS = "valid.jsonl", "valid-labels.lst"


@dataclass(frozen=True)
class MultipleChoice:
    """One question: the ``context`` the model reads, the ``choices`` as the harness's
    ``doc_to_choice`` gives them and the index of the right one. Choice ``i`` is scored as the
    continuation ``delimiter + choices[i]``; the length normalisations count ``choices[i]`` alone."""

    context: str
    choices: tuple[str, ...]
    label: int
    delimiter: str = " "

    @property
    def continuations(self) -> tuple[str, ...]:
        return tuple(self.delimiter + c for c in self.choices)


def piqa_prompt(goal: str) -> str:
    return f"Question: {goal}\nAnswer:"


def _lines(path: Path, key: str) -> list[str]:
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ConfigError(key, str(path), f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    # Blank lines at the end are tolerated; one in the middle would shift the pairing, so it is an error below.
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _question(line: str, label: str, where: str, key: str) -> MultipleChoice:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(key, where, f"is not a JSON object ({err.msg})") from None
    if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in ("goal", "sol1", "sol2")):
        raise ConfigError(key, where, 'must be a JSON object with string fields "goal", "sol1", "sol2"')
    if label.strip() not in ("0", "1"):
        raise ConfigError(key, where, f"has label {label!r}; labels must be 0 (sol1) or 1 (sol2)")
    return MultipleChoice(piqa_prompt(row["goal"]), (row["sol1"], row["sol2"]), int(label))


def read_piqa(folder: str | Path, limit: int | None = None, key: str = KEY) -> list[MultipleChoice]:
    """The first ``limit`` (None: all) validation questions of the PIQA folder, in file order:
    ``valid.jsonl`` (``{"goal", "sol1", "sol2"}`` per line) and ``valid-labels.lst`` (one 0/1 per
    line, aligned). ``key`` names the config key in errors."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("evaluation.piqa.limit", limit, "must be a positive integer or null (all questions)")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(key, str(folder), f"is not a folder (expected one holding {QUESTIONS} and {LABELS})")
    questions, labels = _lines(folder / QUESTIONS, key), _lines(folder / LABELS, key)
    # A count mismatch means the two files are not a pair.
    if len(questions) != len(labels):
        raise ConfigError(key, str(folder), f"{QUESTIONS} has {len(questions)} questions but {LABELS} {len(labels)}")
    if not questions:
        raise ConfigError(key, str(folder), f"{QUESTIONS} has no questions")
    n = len(questions) if limit is None else min(limit, len(questions))
    return [_question(questions[i], labels[i], f"{QUESTIONS}:{i + 1}", key) for i in range(n)]
