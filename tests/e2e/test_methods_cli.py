"""Every loss config and every method experiment through the real CLI, between a teacher and
a student of different depth and width (tiny sizes)."""

import json

import pytest

from conftest import stored_teachers

pytestmark = pytest.mark.e2e

# What a test that checks which models a run trains and which terms it logs, not how well they
# learn, needs: one epoch each (20 steps on digits, logged every 5).
ONE_EPOCH = ["teacher.max_epochs=1", "trainer.max_epochs=1"]
# ... and, where nothing after training is read, no compression table or HF export either.
NOTHING_AFTER = [*ONE_EPOCH, "compression.report=false", "compression.hf=false"]

LOSS_TERMS = {
    "fitnet": {"kd", "ce", "hidden"},
    "tinybert": {"hidden", "attention", "prediction"},
    "minilm": {"attention", "kd", "ce"},
    "distilbert": {"kd", "ce", "cosine"},
    "dkd": {"dkd", "ce"},
    "logit_mse": {"logits", "ce"},
}


def logged_scalars(run_dir, role):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard" / role))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_every_loss_config_runs(cli, tmp_path):
    # One sweep over the loss configs (one process, one teacher): each job must run and log its terms.
    losses = sorted(LOSS_TERMS)
    result = cli("experiment=digits_kd", f"loss={','.join(losses)}", "baseline=false", *NOTHING_AFTER, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(stored_teachers(tmp_path / "teachers")) == 1
    for job, loss in enumerate(losses):
        m = json.loads((result.run_dir / str(job) / "metrics.json").read_text())
        assert m["student"]["params"] < m["teacher"]["params"], loss
        assert 0.0 <= m["student"]["test"]["acc"] <= 1.0
        scalars = logged_scalars(result.run_dir / str(job), "student")
        assert {f"train/loss/{term}" for term in LOSS_TERMS[loss]} <= scalars, (loss, scalars)


def test_multi_teacher(cli, tmp_path):
    # One sweep: the experiment's loss (both teachers trained and stored), then one KD term per
    # teacher from the store.
    result = cli(
        "experiment=digits_multi_teacher",
        "model.teachers.1.hidden_size=24",
        "model.teachers.1.num_layers=1",
        "baseline=false",
        *NOTHING_AFTER,
        "loss=kd_multi,kd_per_teacher",
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    averaged, per_teacher = (result.run_dir / str(job) for job in (0, 1))
    m = json.loads((averaged / "metrics.json").read_text())
    assert [t["role"] for t in m["teachers"]] == ["teacher0", "teacher1"]
    assert [t["source"] for t in m["teachers"]] == ["trained", "trained"]
    assert m["teachers"][0]["params"] != m["teachers"][1]["params"]
    assert len(stored_teachers(tmp_path / "teachers")) == 2
    assert m["reference_acc"] == max(t["test"]["acc"] for t in m["teachers"])
    assert "| teacher1 |" in (averaged / "report.md").read_text()

    per_teacher_metrics = json.loads((per_teacher / "metrics.json").read_text())
    assert [t["source"] for t in per_teacher_metrics["teachers"]] == ["store", "store"]
    assert {"train/loss/kd_teacher0", "train/loss/kd_teacher1"} <= logged_scalars(per_teacher, "student")


def test_cross_domain(cli):
    result = cli("experiment=digits_cross_domain", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert [t["domain"] for t in m["teachers"]] == [0, 1]
    for entry in [*m["teachers"], m["student"], m["baseline"]]:
        assert set(entry["test_by_domain"]) == {"0", "1"}
    # each domain teacher is tested on its own domain: its test acc is its own-domain accuracy
    for d, teacher in enumerate(m["teachers"]):
        assert teacher["test"]["acc"] == pytest.approx(teacher["test_by_domain"][str(d)], abs=1e-6)
    assert "acc domain 1" in (result.run_dir / "report.md").read_text()


def test_mutual(cli, tmp_path):
    result = cli("experiment=digits_mutual", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["mode"] == "mutual" and m["teacher"]["source"] == "mutual"
    assert "student" in m and "baseline" in m
    assert not (tmp_path / "teachers").exists(), "mutual learning trains no stored teacher"
    assert {"train/loss/ce/0", "train/loss/kl/0", "train/loss/ce/1", "train/loss/kl/1"} <= logged_scalars(
        result.run_dir, "mutual"
    )


def test_student_initialised_from_teacher_layers(cli):
    tiny = [
        "teacher.max_epochs=2",
        "trainer.max_epochs=1",
        "model.teacher.hidden_size=32",
        "model.teacher.num_layers=4",
        "model.teacher.num_heads=2",
        "model.teacher.intermediate_size=64",
        "callbacks.progress_bar.refresh_rate=1000",
        "trainer.log_every_n_steps=5",
    ]
    result = cli("experiment=digits_distilbert", "baseline=false", tiny=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.metrics
    assert m["student"]["params"] < m["teacher"]["params"]
    assert logged_scalars(result.run_dir, "student") >= {"train/loss/kd", "train/loss/ce", "train/loss/cosine"}


def test_staged_run_passes_the_student_from_stage_to_stage(cli):
    # The experiment's three stages (general -> task -> finetune), the last at a learning rate
    # too small to move a weight: if the student it receives is the one "task" trained, it
    # tests exactly as well; a fresh student would test at chance.
    result = cli(
        "experiment=digits_staged",
        "baseline=false",
        "teacher.max_epochs=5",
        "stages.0.max_epochs=1",
        "stages.1.max_epochs=8",
        "stages.2.max_epochs=1",
        "stages.2.optimizer.lr=1.0e-30",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stages = result.metrics["stages"]
    assert set(stages) == {"general", "task", "finetune"}
    assert stages["task"]["acc"] > 0.2  # chance is 0.1
    assert stages["finetune"]["acc"] == pytest.approx(stages["task"]["acc"])
    assert result.metrics["student"]["test"] == stages["finetune"]
    assert (result.run_dir / "checkpoints" / "student_general").is_dir()
    log = result.stdout + result.stderr
    assert log.index("stage 1/3: general") < log.index("stage 2/3: task") < log.index("stage 3/3: finetune")


def test_a_failing_stage_names_itself(cli):
    result = cli("experiment=digits_staged", "baseline=false", "stages.2.loss.weights.ce=-1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "stages[2](finetune).loss.weights.ce" in result.stderr
