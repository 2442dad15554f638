"""Faults: a failing job inside a sweep, a NaN loss, a damaged checkpoint, a full disk."""

import json
import math
import os
import resource
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import SHARED_DATA, TINY_OVERRIDES
from distillab.core.checkpoints import CorruptCheckpointError, HashedCheckpointIO, resumable
from distillab.modules import ClassifierModule, OptimizerConfig
from distillab.modules.classifier import NonFiniteLossError

QUICK = [*TINY_OVERRIDES, "teacher.max_epochs=1", "trainer.max_epochs=1", "baseline=false", "compression.report=false"]


@pytest.mark.e2e
def test_a_failing_job_does_not_stop_the_sweep_and_is_marked_failed(cli):
    result = cli("loss.alpha=1.5,0.5", tiny=QUICK, multirun=True)
    assert result.returncode == 1, "a sweep with a failed job ends with exit code 1"
    failed = json.loads((result.run_dir / "0" / "failed.json").read_text())
    assert failed["error"] == "ConfigError" and "loss.alpha=1.5" in failed["message"]
    assert (result.run_dir / "1" / "metrics.json").is_file(), "the job after the failed one ran"
    assert "failed" in result.stdout and "1 of 2 jobs did not finish" in result.stderr


class TurnsNaN(ClassifierModule):
    """Cross-entropy until optimizer step ``at``, then NaN (as a diverging run would)."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at = at

    def training_loss(self, batch):
        result = super().training_loss(batch)
        return result if self.global_step < self.at else type(result)(result.total * math.nan, result.parts)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(digits, tiny_vit, tmp_path):
    steps_per_epoch = len(digits.train_dataloader())
    module = TurnsNaN(tiny_vit(), digits.num_classes, OptimizerConfig(), at=steps_per_epoch + 3)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[HashedCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True, monitor="val/acc", mode="max")],
    )
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step \d+ \(epoch 1.*last good checkpoint"):
        trainer.fit(module, datamodule=digits)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0, "the checkpoint of the last finished epoch, nothing after the NaN"
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in module.parameters()), "the NaN step was not applied"


def test_damaged_checkpoint_is_detected_before_it_is_used(digits, tiny_vit, tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=2,
        plugins=[HashedCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)],
    )
    trainer.fit(ClassifierModule(tiny_vit(), digits.num_classes), datamodule=digits)
    last = tmp_path / "last.ckpt"
    assert resumable(tmp_path) == last, "an intact checkpoint is resumed from"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch.load might not even notice
    last.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="does not match"):
        HashedCheckpointIO().load_checkpoint(last)
    assert resumable(tmp_path) is None, "the stage trains again instead"
    assert (tmp_path / "last.ckpt.corrupt").is_file() and not last.exists()


@pytest.mark.e2e
def test_full_disk_is_one_clear_error(tmp_path):
    def small_files():  # every file this process writes stops at 64 KB, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    cmd = [
        sys.executable,
        "-m",
        "distillab.cli",
        *QUICK,
        "model.teacher.hidden_size=64",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.teachers_dir={tmp_path / 'teachers'}",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "DISTILLAB_DATA": str(SHARED_DATA)}
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, preexec_fn=small_files
    )
    assert proc.returncode == 4, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"distillab: could not write {tmp_path}") and "File too large" in last
    assert "Traceback" not in proc.stderr
