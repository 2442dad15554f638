"""Language-model distillation end to end through the CLI, at a tiny scale: the lm_agnews and
lm_agnews_gkd experiment files on a small corpus (SST-2's dev sentences), one stored teacher
for both, its top-k cache, on-policy batches, and sequence-level KD reusing the same teacher."""

import json

import pytest

from conftest import SHARED_DATA
from distillab.cli import summarize

pytestmark = pytest.mark.e2e


TINY_LM = [
    # GLUE SST-2's 872 dev sentences (the data's test split)
    "data.sources=[{path:${paths.data_root}/sst2/test.tsv,column:sentence}]",
    "data.vocab_size=400",
    "data.block_size=24",
    "data.val_fraction=0.1",
    "data.test_fraction=0.1",
    "model.teacher.hidden_size=32",
    "model.teacher.num_layers=1",
    "model.teacher.num_heads=2",
    "model.student.hidden_size=16",
    "model.student.num_layers=1",
    "teacher.max_epochs=2",
    "trainer.max_epochs=1",
    "cache.topk=32",
    "lm.sequences.prompt_length=8",
    "lm.generations.new_tokens=6",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=1000",
]

# Sequence-level KD from the stored teacher (its continuations generated once), with a
# hidden-state term beside the token term (issue 3's terms on causal LMs): an experiment file of
# the test's own, in a config folder on hydra.searchpath as a user's would be, so that it runs as
# the sweep's third job rather than in a process of its own.
SEQUENCE_KD = """\
# @package _global_
defaults:
  - lm_agnews
  - _self_

baseline: false
lm:
  sequences:
    source: teacher
    temperature: 0
loss:
  terms:
    hidden: {_target_: distillab.losses.HiddenStateLoss, layers: uniform}
  weights:
    hidden: 0.5
"""


def check_language_model_run(m: dict, run_dir) -> None:
    for role in ("teacher", "student", "baseline"):
        assert 1 < m[role]["test"]["ppl"] < 400, (role, m[role]["test"])  # better than uniform over the vocabulary
        assert 0 <= m[role]["test"]["acc"] <= 1
    lm = m["language_model"]
    assert 0 <= lm["student"]["agreement"] <= 1 and 0 <= lm["baseline"]["agreement"] <= 1
    assert lm["student"]["train_tokens_per_s"] > 0 and lm["baseline"]["train_tokens_per_s"] > 0
    assert [set(g) for g in lm["student"]["generations"]] == [{"prompt", "greedy", "sampled"}] * 3
    report = (run_dir / "report.md").read_text()
    assert "| model | params | ppl | next-token acc | agreement | MB | train tokens/s |" in report
    assert "### Generations: student" in report


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="the repository's ../shared/data is absent")
def test_language_model_experiments_share_one_teacher_and_its_topk_cache(cli, tmp_path):
    teachers = tmp_path / "teachers"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "lm_sequence_kd.yaml").write_text(SEQUENCE_KD)
    # data=lm_corpus: Hydra composes the sweep's base config (no experiment chosen yet) with the overrides
    result = cli(
        "data=lm_corpus",
        "experiment=lm_agnews,lm_agnews_gkd,lm_sequence_kd",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        *TINY_LM,
        tiny=False,
        multirun=True,
        teachers_dir=teachers,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(result.run_dir.glob("[0-9]/metrics.json"))
    kd, gkd, seq = (json.loads(p.read_text()) for p in runs)
    check_language_model_run(kd, runs[0].parent)
    assert kd["teachers"][0]["source"] == "trained" and gkd["teachers"][0]["source"] == "store"
    cache = kd["teacher_cache"]["splits"]["train"]
    assert cache["topk"] == 32 and cache["samples"] == 8 and cache["build_seconds"] is not None
    assert cache["dense_logits_bytes"] >= 10 * cache["bytes"]  # 400 logits a position vs 32 ids + 32 values + tail
    assert "Teacher cache, train: 32 slots, top 24 + 8 sampled" in (runs[0].parent / "report.md").read_text()
    # GKD: its JSD term logged; JSD reads the top 32 + the rest as a bucket, another cache entry
    # than lm_agnews's sampled one (on-policy batches are scored live)
    gkd_cache = gkd["teacher_cache"]["splits"]["train"]
    assert gkd_cache["topk"] == 32 and gkd_cache["samples"] == 0 and gkd_cache["build_seconds"] is not None
    config = (runs[1].parent / "config.yaml").read_text()
    assert "source: on_policy" in config and "kind: jsd" in config
    check_language_model_run(gkd, runs[1].parent)
    # distillab-summarize (in-process: its command line is tested in test_summarize.py): the
    # language-model columns of the sweep's table
    out = tmp_path / "summary"
    assert summarize.main([str(result.run_dir), "--out", str(out)]) == 0
    table = (out / "summary.md").read_text()
    assert "test ppl" in table and "ppl vs alone" in table and "train tokens/s" in table

    # Sequence-level KD: the stored teacher's continuations, generated once, then read.
    assert seq["teachers"][0]["source"] == "store"
    seq_config = (runs[2].parent / "config.yaml").read_text()
    assert "source: teacher" in seq_config and "HiddenStateLoss" in seq_config and "baseline" not in seq
    assert len(list((teachers / "sequences").glob("*/sequences.pt"))) == 1
    assert 1 < seq["student"]["test"]["ppl"] < 400  # tested on the corpus's held-out blocks
    assert "seconds" in seq and seq["seconds"]["teacher_sequences"] >= 0
