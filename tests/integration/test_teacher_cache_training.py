"""The teacher output cache inside training: same losses as live teachers, right under DDP."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import torch

from distillab.losses import CompositeLoss, CrossEntropy, HiddenStateLoss, HintonKD
from distillab.modules import DistillationModule, OptimizerConfig
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.ensemble import Teachers


class RecordSteps(L.Callback):
    """Per training step: the loss, the batch's sample indices and the teacher logits it used."""

    def __init__(self, out: Path | None = None):
        self.out, self.losses, self.indices, self.logits = out, [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.indices.append(batch["index"].clone())
        self.logits.append(module.teacher_outputs(batch, "train").logits.clone())

    def on_train_end(self, trainer, module):
        if self.out is not None:
            torch.save(
                {
                    "indices": torch.cat(self.indices),
                    "logits": torch.cat(self.logits),
                    "built": len(module.cache.built),
                },
                self.out / f"rank{trainer.global_rank}.pt",
            )


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**defaults, **kwargs})


def fit(digits, student, teacher, loss, cache: TeacherOutputCache, epochs: int = 2) -> RecordSteps:
    L.seed_everything(0, verbose=False)
    module = DistillationModule(
        copy.deepcopy(student),
        FrozenTeacher(teacher),
        copy.deepcopy(loss),
        digits.num_classes,
        OptimizerConfig(lr=3e-3),
        cache,
    )
    record = RecordSteps()
    trainer(max_epochs=epochs, callbacks=[record]).fit(module, datamodule=digits)
    return record


def test_cached_and_live_teachers_give_the_same_loss_at_every_step(digits, tiny_vit):
    teacher, student = tiny_vit(), tiny_vit(hidden_size=16, num_layers=1)
    for loss in (
        HintonKD(4.0, 0.7),
        CompositeLoss(
            {"ce": CrossEntropy(), "hidden": HiddenStateLoss("cosine", "uniform")}, {"ce": 1.0, "hidden": 1.0}
        ),
    ):
        if isinstance(loss, CompositeLoss) and len(loss.needs):
            loss.setup(student.shape, [teacher.shape])
        live = fit(digits, student, teacher, loss, TeacherOutputCache("off"))
        cache = TeacherOutputCache("memory")
        cached = fit(digits, student, teacher, loss, cache)
        assert cache.cached("train") and cache.cached("val")
        assert len(live.losses) == len(cached.losses) == 2 * len(digits.train_dataloader())
        assert all(torch.equal(a, b) for a, b in zip(live.indices, cached.indices)), "same shuffles"
        torch.testing.assert_close(torch.tensor(cached.losses), torch.tensor(live.losses), rtol=1e-4, atol=1e-5)


def test_two_process_ddp_looks_up_the_same_outputs_as_one_process(digits, tiny_vit, tmp_path):
    teacher, student = tiny_vit(), tiny_vit(hidden_size=16, num_layers=1)
    module = DistillationModule(
        student,
        FrozenTeacher(teacher),
        HintonKD(4.0, 0.7),
        digits.num_classes,
        OptimizerConfig(),
        TeacherOutputCache("disk", tmp_path / "store"),
    )
    trainer(max_epochs=1, devices=2, strategy="ddp_spawn", callbacks=[RecordSteps(tmp_path)]).fit(
        module, datamodule=digits
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    indices = torch.cat([r["indices"] for r in ranks])
    assert set(indices.tolist()) == set(range(len(digits.splits["train"])))  # the sampler pads with repeats
    assert set(ranks[0]["indices"].tolist()) != set(ranks[1]["indices"].tolist()), "each rank reads its own shard"
    assert sum(r["built"] for r in ranks) == 2, "train and val outputs are computed once, not once per rank"

    single = TeacherOutputCache("memory")  # one process, the same teacher
    single.prepare(Teachers([FrozenTeacher(teacher)]), SplitRequest("train", digits.splits["train"]))
    for r in ranks:
        torch.testing.assert_close(r["logits"], single.lookup("train", r["indices"]).logits, rtol=1e-5, atol=1e-6)
