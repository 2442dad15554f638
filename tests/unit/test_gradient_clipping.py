"""optimizer.max_grad_norm: the role's gradient is clipped by Lightning before each step."""

import lightning as L
import pytest
import torch

from distillab.core.config import ConfigError
from distillab.modules import ClassifierModule, OptimizerConfig


class StepGradNorm(L.Callback):
    """The gradient's global norm as the optimizer used it (after clipping, before it is zeroed)."""

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None])
        ).item()


def grad_norm_after_one_step(module: ClassifierModule, digits) -> float:
    seen = StepGradNorm()
    trainer = L.Trainer(
        accelerator="cpu",
        fast_dev_run=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[seen],
    )
    trainer.fit(module, datamodule=digits)
    return seen.norm


def test_max_grad_norm_clips_the_global_norm_and_none_leaves_it(digits, tiny_vit):
    torch.manual_seed(0)
    free = grad_norm_after_one_step(ClassifierModule(tiny_vit(), digits.num_classes), digits)
    torch.manual_seed(0)
    clipped = grad_norm_after_one_step(
        ClassifierModule(tiny_vit(), digits.num_classes, OptimizerConfig(max_grad_norm=1e-3)), digits
    )
    assert free > 1e-2
    assert clipped == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("value", [0, -1.0, "big"])
def test_invalid_max_grad_norm_names_the_key(value):
    with pytest.raises(ConfigError) as err:
        OptimizerConfig(max_grad_norm=value)
    assert err.value.key == "max_grad_norm"
