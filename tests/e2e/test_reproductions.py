"""Each paper reproduction (conf/experiment/) run end to end through the CLI at a tiny scale.

The full runs and their numbers are in docs/REPRODUCTIONS.md; here the experiment files must
compose, load their real data, train every model and report what the paper's table needs.
"""

from pathlib import Path

import pytest
from conftest import SHARED_DATA

pytestmark = pytest.mark.e2e

FASHION = Path("/usr/share/datasets/fashion-mnist")


def needs(path: Path, how: str):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent ({how})")


NO_SHARED = "the repository's ../shared/data"
TINY_TRAINING = ["teacher.max_epochs=2", "trainer.max_epochs=3", "trainer.log_every_n_steps=5",
                 "callbacks.progress_bar.refresh_rate=1000"]


def check_every_model_trained(metrics: dict, chance: float) -> None:
    for role in ("teacher", "student", "baseline"):
        assert metrics[role]["test"]["acc"] > chance + 0.1, (role, metrics[role]["test"])
    assert metrics["student"]["params"] < metrics["teacher"]["params"]


@needs(SHARED_DATA / "mnist", NO_SHARED)
def test_hinton_mnist(cli):
    result = cli("experiment=hinton_mnist", *TINY_TRAINING, "data.max_train_samples=2000", "data.val_size=500",
                 "model.teacher.hidden_sizes=[128,128]", "model.student.hidden_sizes=[32,32]", tiny=False)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    check_every_model_trained(m, chance=0.1)
    assert m["data"] == {"train": 2000, "val": 500, "test": 10000}  # the official test set, whole
    config = (result.run_dir / "config.yaml").read_text()
    assert "temperature: 20.0" in config and "random_shift: 2" in config


@needs(FASHION / "t10k-labels-idx1-ubyte.gz", "apt-get install -y dataset-fashion-mnist")
def test_vit_fashion(cli):
    result = cli("experiment=vit_fashion", *TINY_TRAINING, "data.max_train_samples=3000", "data.val_size=500",
                 "model.teacher.hidden_size=48", "model.teacher.num_layers=1", "model.teacher.intermediate_size=96",
                 "model.student.hidden_size=32", "model.student.num_layers=1", "model.student.intermediate_size=64",
                 tiny=False)
    assert result.returncode == 0, result.stderr[-3000:]
    check_every_model_trained(result.metrics, chance=0.1)
    assert result.metrics["data"]["test"] == 10000


@needs(SHARED_DATA / "sst2", NO_SHARED)
def test_distilbert_sst2(cli):
    result = cli("experiment=distilbert_sst2", *TINY_TRAINING, "data.max_train_samples=1500",
                 "model.teacher.hidden_size=32", "model.teacher.num_heads=2", "model.teacher.intermediate_size=64",
                 "model.teacher.num_layers=2", "model.student.num_layers=1", tiny=False)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["data"]["test"] == 872  # GLUE SST-2 dev, the split papers report
    assert 0.5 < m["bow_baseline"]["test"]["acc"] <= 1 and m["bow_baseline"]["features"] > 100
    for role in ("teacher", "student"):  # the speed-up at batch 1 and 64 comes from these
        assert m["compression"][role]["latency_ms_b1"] > 0 and m["compression"][role]["latency_ms_b64"] > 0
    assert m["student"]["params"] < m["teacher"]["params"]
    assert "bag-of-words LR" in (result.run_dir / "report.md").read_text()


@needs(SHARED_DATA / "agnews", NO_SHARED)
def test_cross_domain_text(cli):
    result = cli("experiment=cross_domain_text", *TINY_TRAINING, "data.domains.sst2.max_train_samples=600",
                 "data.domains.agnews.max_train_samples=600", "model.teacher.hidden_size=32",
                 "model.teacher.num_heads=2", "model.teacher.intermediate_size=64", "model.teacher.num_layers=1",
                 "model.student.hidden_size=16", "model.student.intermediate_size=32", "model.student.num_layers=1",
                 tiny=False)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert [t["role"] for t in m["teachers"]] == ["teacher0", "teacher1"]
    for role in ("student", "baseline"):
        assert set(m[role]["test_by_domain"]) == {"0", "1"}
    assert "acc domain 1" in (result.run_dir / "report.md").read_text()
