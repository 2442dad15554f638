"""Loss terms: ``forward(student_out, teacher_out, batch) -> Tensor``, summed by CompositeLoss."""

from distillab.losses.composite import CompositeLoss, LossResult
from distillab.losses.kd import CrossEntropy, HintonKD, SoftTargetKL, cross_entropy, soft_target_kl

__all__ = ["CompositeLoss", "CrossEntropy", "HintonKD", "LossResult", "SoftTargetKL", "cross_entropy", "soft_target_kl"]
