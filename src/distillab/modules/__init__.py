"""LightningModules: they orchestrate models, losses and metrics; the maths lives in losses/."""

from distillab.modules.classifier import ClassifierModule
from distillab.modules.distiller import DistillationModule
from distillab.modules.optim import OptimizerConfig

__all__ = ["ClassifierModule", "DistillationModule", "OptimizerConfig"]
