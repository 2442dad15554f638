"""A pretrained instruction LLM compressed end to end through the CLI, at a tiny scale:
experiment=smollm2_minitron with a tiny Llama folder (its own tokenizer and chat template) in
place of SmolLM2: the teacher used as it is in bf16, a student cut from it by Block Influence,
healed by KD and by CE, every model scored (corpus and response perplexity, PIQA, answers)."""

import json

import pytest

from conftest import SHARED_DATA
from tiny_llm import write_tiny_llm

pytestmark = pytest.mark.e2e

needs_data = pytest.mark.skipif(
    not all((SHARED_DATA / d).is_dir() for d in ("sst2", "piqa", "gsm8k")),
    reason="the repository's ../shared/data is absent",
)


def tiny_minitron(folder) -> list[str]:
    return [
        "experiment=smollm2_minitron",
        f"model.teacher.pretrained={folder}",
        "data.sources=[{path:${paths.data_root}/sst2/dev.tsv,column:sentence}]",
        "data.block_size=16",
        "data.val_fraction=0.1",
        "data.test_fraction=0.1",
        "data.max_train_tokens=640",
        "model.student.cut.width=null",
        "model.student.cut.depth={method:block_influence,keep:2}",
        "model.student.cut.calibration_batches=2",
        "lm.piqa.limit=4",
        "lm.answers.questions=[What is the capital of France?]",
        "lm.answers.new_tokens=4",
        "lm.speed.batch_sizes=[1]",
        "lm.speed.length=8",
        "lm.responses.max_length=128",
        "lm.responses.max_test_samples=3",
        "lm.responses.eval_batch_size=3",
        "callbacks.progress_bar.refresh_rate=1000",
    ]


@needs_data
def test_a_pretrained_llm_cut_and_healed_by_kd_and_by_ce(cli, tmp_path):
    texts = [line.split("\t")[0] for line in (SHARED_DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:200]]
    folder = write_tiny_llm(tmp_path / "tiny_llm", texts, num_layers=4)
    result = cli(*tiny_minitron(folder), tiny=False)
    assert result.returncode == 0, result.stderr[-4000:]
    m = result.metrics
    teacher, cut = m["teacher"], m["cut"]
    assert teacher["source"] == "pretrained" and teacher["store_key"] is None
    assert teacher["precision"]["dtype"] == "bf16" and 0 <= teacher["precision"]["top1_agreement_with_fp32"] <= 1
    assert cut["cut"]["shape_before"]["num_layers"] == 4 and len(cut["cut"]["kept_layers"]) == 2
    assert cut["params"] < teacher["params"] and m["student"]["params"] == m["baseline"]["params"] == cut["params"]
    lm = m["language_model"]
    for role in ("teacher", "cut", "student", "baseline"):
        assert lm[role]["piqa"]["n"] == 4 and 0 <= lm[role]["piqa"]["acc"] <= 1
        assert lm[role]["response_ppl"] > 1
        assert lm[role]["tokens_per_s"]["1"] > 0 and lm[role]["bytes"] > 0
        assert [a["question"] for a in lm[role]["answers"]] == ["What is the capital of France?"]
    assert lm["teacher"]["bytes"] == 2 * teacher["params"]  # bf16: two bytes a parameter
    report = (result.run_dir / "report.md").read_text()
    assert "PIQA acc" in report and "response ppl" in report and "Greedy answers" in report
    # The teacher is used as it is, not stored: the teachers folder holds only its output cache.
    assert {p.name for p in (tmp_path / "teachers").iterdir()} == {"outputs"}
    assert json.loads((result.run_dir / "metrics.json").read_text())["cut"]["test"]["ppl"] > 1
