"""Reading PIQA's validation split into multiple-choice questions with the harness's prompt."""

import json

import pytest

from conftest import SHARED_DATA, config_error_key
from distillab.evaluation.piqa import MultipleChoice, read_piqa

PIQA = SHARED_DATA / "piqa"


def write(folder, rows, labels):
    folder.mkdir(exist_ok=True)
    (folder / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "valid-labels.lst").write_text("".join(f"{x}\n" for x in labels), encoding="utf-8")
    return folder


ROWS = [
    {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "cut the glass"},
    {"goal": "Dry a towel", "sol1": "put it in water", "sol2": "hang it in the sun "},
    {"goal": "café", "sol1": "a", "sol2": "b"},
]


def test_prompt_choices_labels_and_limit(tmp_path):
    folder = write(tmp_path / "piqa", ROWS, [0, 1, 1])
    questions = read_piqa(folder)
    assert questions[0] == MultipleChoice("Question: Open a jar\nAnswer:", ("twist the lid", "cut the glass"), 0)
    # Choices kept exactly (trailing space included); scored with the harness's " " delimiter.
    assert questions[1].choices == ("put it in water", "hang it in the sun ") and questions[1].label == 1
    assert questions[1].continuations == (" put it in water", " hang it in the sun ")
    assert questions[2].context == "Question: café\nAnswer:"
    assert read_piqa(folder, limit=2) == questions[:2]
    assert read_piqa(folder, limit=10) == questions


def test_errors_name_the_key(tmp_path):
    key = "evaluation.piqa.path"
    assert config_error_key(lambda: read_piqa(tmp_path / "absent")) == key
    assert config_error_key(lambda: read_piqa(write(tmp_path / "a", ROWS, [0, 1]))) == key
    assert config_error_key(lambda: read_piqa(write(tmp_path / "b", ROWS, [0, 1, 2]))) == key
    assert (
        config_error_key(lambda: read_piqa(write(tmp_path / "c", [{"goal": "x", "sol1": "y"}] * 3, [0, 0, 0]))) == key
    )
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "valid.jsonl").write_text("{}\n")
    assert config_error_key(lambda: read_piqa(tmp_path / "d")) == key
    assert (
        config_error_key(lambda: read_piqa(write(tmp_path / "e", ROWS, [0, 1, 1]), limit=0)) == "evaluation.piqa.limit"
    )


def test_the_real_validation_split():
    if not (PIQA / "valid.jsonl").is_file():
        pytest.skip(f"real data absent: {PIQA}")
    questions = read_piqa(PIQA)
    assert len(questions) == 1838
    assert sum(q.label for q in questions) == 928  # PROVENANCE.md: 910 zeros, 928 ones
    first = questions[0]
    assert first.context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert first.choices[0].startswith(
        "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper"
    )
    assert first.label == 0
    assert read_piqa(PIQA, limit=100) == questions[:100]
