"""A student born from its teacher (DistilBERT, Sanh et al. 2019): copy the embeddings and a
chosen subset of encoder layers, so distillation starts from the teacher's knowledge.

Layers are 0-based teacher layer indices, one per student layer: ``every_k`` takes
0, k, 2k, ... (DistilBERT: k=2, every other layer of BERT-base), or give a list. Everything
outside the encoder layers (embeddings, final norm, pooler, classifier head) is copied as
is. Widths (hidden, intermediate, heads) and sequence lengths must match: a layer of another
width has no meaningful copy.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from distillab.core.config import ConfigError, check_int
from distillab.models.output import TransformerClassifier

# Encoder blocks: "bert.encoder.layer.<i>." in BERT, "vit.layers.<i>." in transformers 5's ViT.
_LAYER = re.compile(r"^(.*\.(?:encoder\.layer|layers)\.)(\d+)(\..*)$")


def teacher_layers_for(spec: Any, k: int, student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer each student layer is copied from."""
    if spec == "every_k":
        k = check_int("k", k, low=1)
        layers = [i * k for i in range(student_layers)]
    elif isinstance(spec, str) or not hasattr(spec, "__iter__"):
        raise ConfigError("layers", spec, "must be 'every_k' or a list of teacher layer indices")
    else:
        layers = [check_int(f"layers[{i}]", v, low=0) for i, v in enumerate(spec)]
    if len(layers) != student_layers or max(layers) >= teacher_layers:
        raise ConfigError(
            "layers",
            layers,
            f"needs {student_layers} teacher layer indices (the student's depth), each in 0..{teacher_layers - 1}",
        )
    return layers


def check_init_from_teacher(
    student: TransformerClassifier, teacher: TransformerClassifier, spec: Any, k: int
) -> list[int]:
    """Validate before anything trains; returns the layer list."""
    s, t = student.shape, teacher.shape
    for field in ("hidden_size", "intermediate_size", "num_heads", "tokens"):
        if getattr(s, field) != getattr(t, field):
            raise ConfigError(
                "from_teacher",
                True,
                f"needs model.student.{field}={getattr(s, field)} to equal model.teacher's {getattr(t, field)}",
            )
    if type(student.model) is not type(teacher.model):
        raise ConfigError("from_teacher", True, "needs student and teacher of the same model class")
    return teacher_layers_for(spec, k, s.num_layers, t.num_layers)


@torch.no_grad()
def init_from_teacher(student: TransformerClassifier, teacher: TransformerClassifier, layers: list[int]) -> list[str]:
    """Copy the teacher's tensors into the student; returns the student keys that were copied."""
    source = teacher.state_dict()
    target = student.state_dict()
    copied = []
    for key, value in target.items():
        match = _LAYER.match(key)
        teacher_key = f"{match[1]}{layers[int(match[2])]}{match[3]}" if match else key
        if teacher_key in source and source[teacher_key].shape == value.shape:
            value.copy_(source[teacher_key])
            copied.append(key)
    return copied
