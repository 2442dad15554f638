"""Supervised training of one classifier: teachers, and students trained alone (baselines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from distillab.core.checkpoints import rng_states, set_rng_states
from distillab.core.config import check_choice, check_number
from distillab.data.batch import Batch
from distillab.evaluation.entity_metrics import name_tags, token_classification_metrics
from distillab.evaluation.lm_metrics import language_model_metrics, masked_labels
from distillab.evaluation.metrics import classification_metrics
from distillab.losses.composite import LossResult
from distillab.losses.kd import cross_entropy
from distillab.losses.reduce import label_mask
from distillab.models.output import ModelOutput, TransformerClassifier
from distillab.modules.optim import OptimizerConfig, build_optimizer
from distillab.pruning.magnitude import restore_masks
from distillab.robustness import Attack, perturb

TASKS = ("classification", "language_model", "token_classification")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: training stops before the step that would
    spread it into the weights, so the last checkpoint is still a good one."""


class ClassifierModule(L.LightningModule):
    """Trains ``model`` with cross-entropy; logs val/test accuracy, macro F1, precision, recall.

    Subclasses change what is optimised by overriding :meth:`training_loss` and
    :meth:`trainable_parameters`; evaluation is shared. ``compile_model`` runs the model's
    forward through ``torch.compile`` (slow to start, faster per step on long runs).
    ``task="language_model"`` (the data's ``task``): labels are next tokens [batch, seq] and
    val/test log perplexity and next-token accuracy instead of the classification metrics.
    ``task="token_classification"``: labels are tags [batch, seq] (-100 where no word starts) and
    val/test log word accuracy and seqeval's entity precision, recall and F1 under the same names;
    their tag names are ``label_names``, else the datamodule's, read when a Trainer sets up.
    """

    def __init__(
        self,
        model: TransformerClassifier,
        num_classes: int,
        optimizer: OptimizerConfig | None = None,
        compile_model: bool = False,
        attack: Attack | None = None,
        adversarial_weight: float = 1.0,
        task: str = "classification",
        label_names: list[str] | None = None,
    ):
        super().__init__()
        self.task = check_choice("task", task, TASKS)
        self.label_names = label_names  # token classification: the tags, in id order (None: the datamodule's)
        self.model = model
        # Adversarial training (Madry et al. 2018): L = (1 - w)·CE(x) + w·CE(x + δ*), δ* from ``attack``.
        self.attack = attack
        self.adversarial_weight = check_number("adversarial_weight", adversarial_weight, low=0, high=1)
        # The compiled wrapper shares the model's weights; it is kept out of the module tree
        # so that checkpoints hold the plain model's keys.
        self.__dict__["run_model"] = torch.compile(model) if compile_model else model
        self.optimizer_config = optimizer or OptimizerConfig()
        metrics = {
            "language_model": lambda p: language_model_metrics(p),
            "token_classification": lambda p: token_classification_metrics(p, label_names),
        }.get(task, lambda p: classification_metrics(num_classes, p))
        self.val_metrics, self.test_metrics = metrics("val/"), metrics("test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def setup(self, stage: str) -> None:
        if self.task == "token_classification" and self.label_names is None:
            names = getattr(self.trainer.datamodule, "label_names", None)
            if not names:
                raise ValueError("token classification needs a datamodule with label_names (the tags, in id order)")
            self.label_names = list(names)
            for metrics in (self.val_metrics, self.test_metrics):
                name_tags(metrics, names)

    def forward(self, inputs: Tensor | dict[str, Tensor]) -> ModelOutput:
        return self.model(inputs)

    def training_loss(self, batch: Batch) -> LossResult:
        ce = cross_entropy(self.run_model(batch["inputs"]).logits, batch["labels"], label_mask(batch))
        if self.attack is None:
            return LossResult(ce, {"ce": ce})
        ce_adv = cross_entropy(self.perturbed(batch, self.attack).logits, batch["labels"], label_mask(batch))
        w = self.adversarial_weight
        return LossResult((1 - w) * ce + w * ce_adv, {"ce": ce, "ce_adv": ce_adv})

    def perturbed(self, batch: Batch, attack: Attack, **needs: bool) -> ModelOutput:
        """The model's output on the adversarial version of the batch: ``attack`` raises the
        model's cross-entropy on the labels (inputs in [0, 1]; token models in embedding space).
        The attack runs in eval mode (no dropout noise in its gradients) and draws its random
        start from torch's generator, so a seed (and a resumed run) gives the same examples."""
        was_training = self.model.training
        self.model.eval()
        try:
            adv = perturb(
                self.model, batch, lambda out: cross_entropy(out.logits, batch["labels"], label_mask(batch)), attack
            )
        finally:
            self.model.train(was_training)
        return adv(self.model, **needs)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        result = self.training_loss(batch)
        if not torch.isfinite(result.total):
            self._stop_non_finite(result)
        if self._logs_this_step():
            n = len(batch["labels"])
            self.log("train/loss", result.total, prog_bar=True, batch_size=n)
            self.log_dict({f"train/loss/{k}": v for k, v in result.parts.items()}, batch_size=n)
        return result.total

    def _stop_non_finite(self, result: LossResult) -> None:
        parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in result.parts.items())
        checkpoint = self.trainer.checkpoint_callback
        kept = (
            f"the last good checkpoint is {checkpoint.last_model_path}"
            if checkpoint and checkpoint.last_model_path
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"the training loss is {float(result.total.detach())} at step {self.global_step} (epoch {self.current_epoch}; "
            f"terms: {parts}): stopped before that step, {kept}. Lower optimizer.lr (or teacher.optimizer.lr), set "
            f"trainer.gradient_clip_val, or use trainer.precision=32-true"
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint taken while pruning masks were live holds weight_orig + weight_mask:
        # give the model the same parametrisation before Lightning loads the state dict.
        model_state = {
            k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
        }
        restore_masks(self.model, model_state)
        # Restored here: Lightning creates the resumed epoch's data iterator (one draw) as the
        # optimizer is configured, before any later hook, and draws its shuffle at the first
        # batch; the uninterrupted run made the same two draws from this state.
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def _logs_this_step(self) -> bool:
        """Whether the logger writes this step's values (every ``trainer.log_every_n_steps``).
        A ``self.log`` call costs about 1 ms on a slow CPU, more than a tiny student's
        forward, so the steps whose values Lightning would not write skip it."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def evaluate(self, batch: Batch, split: str) -> ModelOutput:
        """Accumulate one val/test batch; the metrics are logged once, at the epoch's end."""
        out = self.run_model(batch["inputs"])
        n = len(batch["labels"])
        loss = self.val_loss if split == "val" else self.test_loss
        loss.update(cross_entropy(out.logits, batch["labels"], batch.get("mask")), weight=n)
        labels = masked_labels(batch["labels"], batch.get("mask")) if self.task == "language_model" else batch["labels"]
        (self.val_metrics if split == "val" else self.test_metrics).update(out.logits, labels)
        return out

    def log_evaluation(self, split: str) -> None:
        self.log(f"{split}/loss", self.val_loss if split == "val" else self.test_loss)
        self.log_dict(self.val_metrics if split == "val" else self.test_metrics, prog_bar=split == "val")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.log_evaluation("test")

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # The role's own optimizer.max_grad_norm, else the Trainer's gradient_clip_val (Lightning's clip either way).
        if self.optimizer_config.max_grad_norm is not None:
            gradient_clip_val, gradient_clip_algorithm = self.optimizer_config.max_grad_norm, "norm"
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    def configure_optimizers(self) -> dict:
        # In a fixed order by name, pruning's "<name>_orig" read as "<name>": pruning re-registers
        # a weight last in its module, so a run resumed with live masks would otherwise list the
        # parameters in another order than the optimizer state it restores.
        trainable = {id(p) for p in self.trainable_parameters()}
        named = sorted((n.replace("_orig", ""), p) for n, p in self.named_parameters() if id(p) in trainable)
        params = [p for _, p in named]
        return build_optimizer(params, self.optimizer_config, int(self.trainer.estimated_stepping_batches))
