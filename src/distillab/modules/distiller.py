"""Offline distillation: a frozen teacher, a student trained with a composite loss."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric

from distillab.data.batch import Batch
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.losses.adversarial import PERTURBED, AdversarialLoss
from distillab.losses.composite import CompositeLoss, LossResult
from distillab.losses.kd import IGNORE_INDEX
from distillab.losses.token import token_temperature
from distillab.models.output import ModelOutput, TransformerClassifier
from distillab.modules.classifier import ClassifierModule
from distillab.modules.optim import OptimizerConfig
from distillab.teachers.cache import (
    SplitRequest,
    TeacherOutputCache,
    weights_fingerprint,
)
from distillab.teachers.ensemble import Teachers, top1
from distillab.teachers.frozen import FrozenTeacher
from distillab.teachers.sequences import SequenceSource, on_policy_batch

# Lightning warns about sub-modules in eval mode at the start of fit; the frozen teacher is
# in eval mode on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


class TeacherMismatchError(RuntimeError):
    """A student checkpoint resumed against teachers other than those it was distilled from."""


class DistillationModule(ClassifierModule):
    """Trains ``student`` (``self.model``) with ``loss(student_out, teacher_out, batch)``.

    ``teachers`` is one frozen teacher or several (see teachers/ensemble.py). Their outputs
    come from ``cache`` (teachers/cache.py) where it can serve them, built when fitting or
    testing starts, else from a forward on the batch. Also logs teacher-student top-1
    agreement on val and test. Teachers are not part of the checkpoint: they are frozen,
    stored elsewhere, and would only make checkpoints large.

    Language models: ``cache_topk`` keeps the teacher's top k next tokens per position in the
    cache (at the token term's temperature) instead of V logits, the last ``cache_samples`` of
    them drawn from the rest of the distribution (an unbiased target, losses/topk.py); ``sequences`` with
    ``source=on_policy`` replaces a batch, with probability λ, by continuations the student
    samples from the batch's prompts, scored by the live teacher (GKD, Agarwal et al. 2024).
    """

    def __init__(
        self,
        student: TransformerClassifier,
        teachers: Teachers | FrozenTeacher,
        loss: CompositeLoss,
        num_classes: int,
        optimizer: OptimizerConfig | None = None,
        cache: TeacherOutputCache | None = None,
        compile_model: bool = False,
        task: str = "classification",
        cache_topk: int | None = None,
        cache_samples: int = 0,
        sequences: SequenceSource | None = None,
    ):
        super().__init__(student, num_classes, optimizer, compile_model, task=task)
        self.teachers = teachers if isinstance(teachers, Teachers) else Teachers([teachers])
        self.loss = loss
        self.cache = cache or TeacherOutputCache("off")
        self.cache_topk = cache_topk
        self.cache_samples = cache_samples
        self.on_policy = sequences if sequences is not None and sequences.source == "on_policy" else None
        self.val_agreement = MeanMetric()
        self.test_agreement = MeanMetric()

    def _outputs_needed(self) -> dict[str, bool]:
        return {"hidden_states": "hidden_states" in self.loss.needs, "attentions": "attentions" in self.loss.needs}

    def teacher_outputs(self, batch: Batch, split: str, **needs: bool) -> Any:
        inputs = batch["inputs"]
        seq_len = inputs["attention_mask"].shape[1] if isinstance(inputs, dict) and "attention_mask" in inputs else None
        cached = self.cache.lookup(split, batch["index"], seq_len)
        return cached if cached is not None else self.teachers(batch, **needs)

    def training_loss(self, batch: Batch) -> LossResult:
        needs = self._outputs_needed()
        # Drawn from torch's generator: a seed (and a resumed run) gives the same choices.
        if self.on_policy is not None and float(torch.rand(())) < self.on_policy.on_policy_fraction:
            batch = on_policy_batch(self.model, batch, self.on_policy)
            student_out = self.run_model(batch["inputs"], **needs)
            return self.loss(student_out, self.teachers(batch, **needs), batch)  # new text: not in the cache
        student_out = self.run_model(batch["inputs"], **needs)
        teacher_out = self.teacher_outputs(batch, "train", **needs)  # on the clean inputs (ARD's targets)
        if isinstance(self.loss, AdversarialLoss):  # its terms on perturbed inputs read this
            batch = {**batch, PERTURBED: self.perturbed(batch, self.loss.attack, **needs)}
        return self.loss(student_out, teacher_out, batch)

    def evaluate(self, batch: Batch, split: str) -> ModelOutput:
        out = super().evaluate(batch, split)
        agreement = self.val_agreement if split == "val" else self.test_agreement
        agree = (out.logits.argmax(-1) == top1(self.teacher_outputs(batch, split))).float()
        if self.task == "token_classification":  # over the words, as the metrics: not sub-tokens or padding
            agree = agree[batch["labels"] != IGNORE_INDEX]
        agreement.update(agree)
        return out

    def cache_request(
        self,
        split: str,
        data: Any,
        device: torch.device | str,
        precision: str,
        context: Callable[[], AbstractContextManager] = nullcontext,
    ) -> SplitRequest | None:
        """What the cache is asked for ``split`` of ``data``: this module's teachers under its loss
        (the layers it maps, the token temperature, top-k), in ``precision``. The one place a
        request is made, so ``stage=capture`` asks for the entry a later distillation run reads.
        None where there is nothing to index into (loaders not from a TensorDataModule)."""
        if not isinstance(data, TensorDataModule) or split not in data.splits:
            return None
        return SplitRequest(
            split,
            data.splits[split],
            inputs_vary=data.inputs_vary(split),
            batch_size=data.eval_batch_size,
            device=device,
            precision=precision,
            context=context,
            keep=self.loss.teacher_tensors(),
            topk=self.cache_topk,
            topk_temperature=token_temperature(self.loss) or 1.0,
            topk_samples=self.cache_samples,
            **(self._outputs_needed() if split == "train" else {}),
        )

    def _prepare_cache(self, split: str) -> None:
        if self.cache.mode == "off":
            return
        trainer = self.trainer
        request = self.cache_request(
            split, trainer.datamodule, self.device, str(trainer.precision), trainer.precision_plugin.forward_context
        )
        if request is not None:
            self.cache.prepare(self.teachers, request)

    def on_fit_start(self) -> None:
        self._prepare_cache("train")
        self._prepare_cache("val")

    def on_test_start(self) -> None:
        self._prepare_cache("test")

    def log_evaluation(self, split: str) -> None:
        super().log_evaluation(split)
        self.log(f"{split}/agreement", self.val_agreement if split == "val" else self.test_agreement)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        # The loss may own learned projections (student width -> teacher width).
        return itertools.chain(self.model.parameters(), self.loss.parameters())

    def _teachers_sha256(self) -> str:
        if "_teachers_hash" not in self.__dict__:  # frozen: hashed once
            self.__dict__["_teachers_hash"] = weights_fingerprint(self.teachers)
        return self.__dict__["_teachers_hash"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["teachers_sha256"] = self._teachers_sha256()  # the teachers are referenced, not saved

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("teachers_sha256")
        if saved is not None and saved != self._teachers_sha256():
            raise TeacherMismatchError(
                f"this checkpoint was trained against other teacher weights (SHA-256 {saved[:12]}..., this run's "
                f"teachers {self._teachers_sha256()[:12]}...): resume with the teacher it was distilled from, or "
                "start the student afresh"
            )
        super().on_load_checkpoint(checkpoint)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().state_dict(*args, **kwargs)
        return {k: v for k, v in state.items() if not k.startswith("teachers.")}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith("teachers.")]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"checkpoint does not match the student: missing {missing}, unexpected {result.unexpected_keys}"
            )
        return result
