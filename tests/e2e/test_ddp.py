"""Several devices: trainer=ddp on 2 CPU processes (gloo), metrics gathered over the whole test
split, the teacher store and the teacher cache written once; trainer=gpu (bf16) where there is a GPU."""

import pytest
import torch

from conftest import stored_teachers
from distillab.data import DigitsDataModule
from distillab.models import build_mlp
from distillab.modules import ClassifierModule

pytestmark = pytest.mark.e2e

MLP = [
    "model/teacher=mlp_1200",
    "model/student=mlp_800",
    "model.teacher.hidden_sizes=[64]",
    "model.student.hidden_sizes=[32]",
    "teacher.max_epochs=2",
    "trainer.max_epochs=2",
    "callbacks.progress_bar.refresh_rate=1000",
    "baseline=false",
    "compression.report=false",
    "data.test_fraction=0.1505",
]  # 271 test samples: two shards of 136 and 135, none repeated


def test_two_process_ddp_run(cli, tmp_path):
    result = cli("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", tiny=MLP)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert (result.run_dir / "train_ddp_process_1.log").is_file(), "a second process ran"
    assert output.count("stored teacher in") == 1
    assert output.count("computed once") == 3, "train, val and test outputs of the teacher: once each"
    assert len(stored_teachers(tmp_path / "teachers")) == 1
    assert not list((tmp_path / "teachers").glob(".tmp-*")), "no half-written entry"

    # The reported accuracy is over the whole test split, as one process measures it from the checkpoint.
    dm = DigitsDataModule(test_fraction=0.1505)
    dm.setup()
    student = build_mlp(**dm.model_kwargs, hidden_sizes=[32], dropout=0.0, input_dropout=0.0)
    state = torch.load(result.run_dir / "checkpoints" / "student" / "best.ckpt", weights_only=True)["state_dict"]
    student.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    module = ClassifierModule(student, dm.num_classes).eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            module.evaluate(batch, "test")
    single = {k.removeprefix("test/"): float(v) for k, v in module.test_metrics.compute().items()}
    reported = result.metrics["student"]["test"]
    assert reported["acc"] == pytest.approx(single["acc"], abs=1e-6) and reported["f1"] == pytest.approx(
        single["f1"], abs=1e-6
    )
    assert reported["acc"] > 0.3, "a student that learned (chance is 0.1)"
    assert result.metrics["data"]["test"] == 271


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_gpu_run_in_bf16(cli):
    result = cli("trainer=gpu", tiny=MLP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bf16-mixed" in (result.run_dir / "config.yaml").read_text()
    assert result.metrics["student"]["test"]["acc"] > 0.3


def test_fsdp_is_recognised_as_distributed_and_refused_on_cpu_in_one_line(cli):
    from omegaconf import OmegaConf

    from distillab.core.distributed import is_distributed

    fsdp = OmegaConf.create({"trainer": {"strategy": {"_target_": "lightning.pytorch.strategies.FSDPStrategy"}}})
    assert is_distributed(fsdp) and is_distributed(OmegaConf.create({"trainer": {"strategy": "fsdp"}}))
    assert not is_distributed(OmegaConf.create({"trainer": {"strategy": "auto"}}))
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the run below would start")
    result = cli("trainer=fsdp", "trainer.accelerator=cpu", tiny=MLP)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "distillab: config error: trainer='{...}': refused by Lightning: The strategy `fsdp` requires a GPU accelerator"
        )
    )
    assert not (result.run_dir / "checkpoints").exists(), "nothing trained"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP needs 2 CUDA GPUs")
def test_two_gpu_fsdp_run(cli, tmp_path):
    result = cli("trainer=fsdp", tiny=MLP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(stored_teachers(tmp_path / "teachers")) == 1
    assert result.metrics["student"]["test"]["acc"] > 0.3
