"""LightningModules on real digits with tiny models: fast_dev_run, a frozen teacher, checkpoints."""

import copy

import lightning as L
import pytest
import torch

from distillab.losses import HintonKD
from distillab.modules import ClassifierModule, DistillationModule, OptimizerConfig
from distillab.modules.distiller import TeacherMismatchError
from distillab.teachers import FrozenTeacher


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def test_classifier_fast_dev_run(digits, tiny_vit):
    module = ClassifierModule(tiny_vit(), digits.num_classes)
    t = trainer(fast_dev_run=True)
    t.fit(module, datamodule=digits)
    assert {"train/loss", "train/loss/ce", "val/acc", "val/f1", "val/precision", "val/recall"} <= set(t.logged_metrics)


def test_distiller_fast_dev_run_logs_loss_parts_and_agreement(digits, tiny_vit):
    module = DistillationModule(
        tiny_vit(hidden_size=16), FrozenTeacher(tiny_vit()), HintonKD(4.0, 0.5), digits.num_classes
    )
    t = trainer(fast_dev_run=True)
    t.fit(module, datamodule=digits)
    assert {"train/loss", "train/loss/kd", "train/loss/ce", "val/acc", "val/agreement"} <= set(t.logged_metrics)
    results = t.test(module, datamodule=digits, verbose=False)[0]
    assert 0.0 <= results["test/agreement"] <= 1.0 and "test/f1" in results


def test_distillation_leaves_the_teacher_unchanged_and_in_eval_mode(digits, tiny_vit):
    teacher_model = tiny_vit(dropout=0.3)  # dropout makes an accidental train() visible
    before = copy.deepcopy(teacher_model.state_dict())
    student = tiny_vit(hidden_size=16)
    student_before = copy.deepcopy(student.state_dict())
    module = DistillationModule(
        student, FrozenTeacher(teacher_model), HintonKD(4.0, 0.9), digits.num_classes, OptimizerConfig(lr=1e-2)
    )
    trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=1).fit(module, datamodule=digits)
    assert not module.teachers.training and not teacher_model.training
    assert all(not p.requires_grad for p in teacher_model.parameters())
    for name, value in teacher_model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    changed = [n for n, v in student.state_dict().items() if not torch.equal(v, student_before[n])]
    assert changed, "the student did not learn"


def test_checkpoint_holds_the_student_not_the_teacher(digits, tiny_vit, tmp_path):
    module = DistillationModule(tiny_vit(hidden_size=16), FrozenTeacher(tiny_vit()), HintonKD(), digits.num_classes)
    t = trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, enable_checkpointing=True, default_root_dir=tmp_path
    )
    t.fit(module, datamodule=digits)
    t.save_checkpoint(tmp_path / "x.ckpt")
    state = torch.load(tmp_path / "x.ckpt", weights_only=False)["state_dict"]
    assert any(k.startswith("model.") for k in state)
    assert not any(k.startswith("teacher.") for k in state)
    fresh = DistillationModule(tiny_vit(hidden_size=16), FrozenTeacher(tiny_vit()), HintonKD(), digits.num_classes)
    fresh.load_state_dict(state)  # strict about the student, silent about the teacher
    with pytest.raises(RuntimeError, match="does not match the student"):
        fresh.load_state_dict({k: v for k, v in state.items() if "classifier" not in k})


def test_resuming_against_another_teacher_is_refused(digits, tiny_vit, tmp_path):
    teacher = tiny_vit()
    module = DistillationModule(tiny_vit(hidden_size=16), FrozenTeacher(teacher), HintonKD(), digits.num_classes)
    t = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=tmp_path)
    t.fit(module, datamodule=digits)
    t.save_checkpoint(tmp_path / "x.ckpt")
    assert "teachers_sha256" in torch.load(tmp_path / "x.ckpt", weights_only=True)  # referenced, not saved

    def resume(teacher_model) -> None:
        again = DistillationModule(
            tiny_vit(hidden_size=16), FrozenTeacher(teacher_model), HintonKD(), digits.num_classes
        )
        trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, default_root_dir=tmp_path).fit(
            again, datamodule=digits, ckpt_path=tmp_path / "x.ckpt"
        )

    resume(copy.deepcopy(teacher))  # the same teacher weights: resumes
    with pytest.raises(TeacherMismatchError, match="other teacher weights"):
        resume(tiny_vit())  # another initialisation


def test_projections_are_trained_and_saved_with_the_student(digits, tiny_vit, tmp_path):
    from distillab.losses import CompositeLoss, CrossEntropy, HiddenStateLoss

    student, teacher = tiny_vit(hidden_size=16), tiny_vit(num_layers=2)
    loss = CompositeLoss(
        {"ce": CrossEntropy(), "hidden": HiddenStateLoss("mse", "uniform")}, {"ce": 1.0, "hidden": 1.0}
    )
    loss.setup(student.shape, [teacher.shape])
    before = loss.terms["hidden"].projections[0].weight.detach().clone()
    module = DistillationModule(student, FrozenTeacher(teacher), loss, digits.num_classes)
    t = trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, log_every_n_steps=1)
    t.fit(module, datamodule=digits)
    assert not torch.equal(loss.terms["hidden"].projections[0].weight, before), "projection not optimised"
    assert {"train/loss/hidden", "train/loss/ce"} <= set(t.logged_metrics)
    t.save_checkpoint(tmp_path / "p.ckpt")
    state = torch.load(tmp_path / "p.ckpt", weights_only=False)["state_dict"]
    assert "loss.terms.hidden.projections.0.weight" in state


def test_mutual_learning_updates_every_peer(digits, tiny_vit):
    from distillab.losses import MutualLoss
    from distillab.modules.mutual import MutualModule

    peers = [tiny_vit(), tiny_vit(hidden_size=16)]
    before = [copy.deepcopy(p.state_dict()) for p in peers]
    module = MutualModule(peers, MutualLoss(), digits.num_classes, OptimizerConfig(lr=1e-2))
    assert len(list(module.trainable_parameters())) == sum(len(list(p.parameters())) for p in peers)
    t = trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, log_every_n_steps=1)
    t.fit(module, datamodule=digits)
    for peer, old in zip(peers, before):
        assert any(not torch.equal(v, old[k]) for k, v in peer.state_dict().items())
    assert {"train/loss/ce/0", "train/loss/kl/1"} <= set(t.logged_metrics)
