"""A trained student as a Hugging Face folder, checked by loading it back.

    <run>/export/<role>/  config.json  model.safetensors  tokenizer files  README.md
                          (language models: generation_config.json, a chat template if any)

What a user takes away from a run is the student, and in this ecosystem that is a folder
``AutoModelFor<Task>.from_pretrained`` reads. The export writes one from an eval-mode CPU copy
(pruning masks folded into the weights, the shape written into the config: export/hf_shape.py),
then loads it back with the matching Auto class and compares its logits with the copy's on the
same inputs: a difference above ``tolerance`` (1e-5) is an error, not a folder.
The folder is built beside its place and renamed into it when complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
)

from distillab.core.config import ConfigError
from distillab.export.hf_shape import KEY, ONNX_HINT, RecordedShape, rebuilt, record_shape
from distillab.export.hf_tokenizer import TokenizerSource, save_tokenizer
from distillab.export.model_card import CardFacts, model_card
from distillab.export.quantize import deployable_copy
from distillab.models.gguf import quiet_transformers
from distillab.models.output import TransformerClassifier

TOLERANCE = 1e-5
# (Auto class, its model_type -> class name table, the Hub's pipeline tag), in the order asked.
AUTO_CLASSES = (
    (AutoModelForSequenceClassification, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES, "text-classification"),
    (AutoModelForTokenClassification, MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES, "token-classification"),
    (AutoModelForImageClassification, MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, "image-classification"),
    (AutoModelForCausalLM, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "text-generation"),
)


class ExportMismatchError(RuntimeError):
    """The folder, loaded back, does not give the logits of the model it was written from."""


@dataclass
class HFExport:
    path: Path
    auto_class: str  # e.g. AutoModelForSequenceClassification
    max_abs_diff: float  # reloaded vs in-memory logits on the check's inputs
    shape: RecordedShape
    files: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "auto_class": self.auto_class,
            "max_abs_diff": self.max_abs_diff,
            "shape": self.shape.as_dict(),
            "files": self.files,
        }


def hf_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside distillab's adapter (or ``model`` itself)."""
    inner = model.model if isinstance(model, TransformerClassifier) else model
    if not isinstance(inner, PreTrainedModel):
        raise ConfigError(
            KEY,
            True,
            f"the student ({type(inner).__name__}) is not a transformers model: only transformers "
            f"models are saved as Hugging Face folders; {ONNX_HINT}",
        )
    return inner


def auto_class_of(model: PreTrainedModel) -> tuple[type, str]:
    """The ``AutoModelFor...`` class that loads ``model``'s folder back as ``type(model)``, and
    the task's pipeline tag."""
    name = type(model).__name__
    for auto, table, tag in AUTO_CLASSES:
        names = table.get(model.config.model_type, ())
        if name in ((names,) if isinstance(names, str) else names):
            return auto, tag
    known = ", ".join(auto.__name__ for auto, _, _ in AUTO_CLASSES)
    raise ConfigError(KEY, True, f"the student ({name}) is loaded by none of {known}; {ONNX_HINT}")


def probe_inputs(config: PretrainedConfig, input_name: str, rows: int = 2, length: int = 8) -> dict[str, Tensor]:
    """Fixed random inputs of the model's kind (seeded): pixels in [0, 1), or token ids with a
    padded second row, so the check also covers the attention mask."""
    generator = torch.Generator().manual_seed(0)
    if input_name == "pixel_values":
        size = (rows, config.num_channels, config.image_size, config.image_size)
        return {"pixel_values": torch.rand(size, generator=generator)}
    positions = getattr(config, "max_position_embeddings", None) or config.n_positions
    length = min(length, positions)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1:, length // 2 :] = 0
    ids = torch.randint(0, config.vocab_size, (rows, length), generator=generator)
    return {"input_ids": ids, "attention_mask": mask}


def _as_kwargs(inputs: Tensor | Mapping[str, Tensor], input_name: str) -> dict[str, Tensor]:
    kwargs = dict(inputs) if isinstance(inputs, Mapping) else {input_name: inputs}
    return {k: v.cpu() for k, v in kwargs.items()}


@torch.inference_mode()
def _logits(model: PreTrainedModel, inputs: dict[str, Tensor]) -> Tensor:
    return model(**inputs).logits.float()


def name_labels(config: PretrainedConfig, label_names: list[str]) -> None:
    """``id2label`` / ``label2id`` from the data's class names, in label-id order."""
    if len(label_names) != config.num_labels:
        raise ValueError(f"{len(label_names)} label names for a model of {config.num_labels} labels")
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}


def check_reload(
    folder: Path, auto: type, inputs: dict[str, Tensor], expected: Tensor, tolerance: float, attention: str
) -> float:
    """Load ``folder`` with ``auto`` and return the largest logit difference from ``expected``;
    ExportMismatchError above ``tolerance``. ``attention``: the kernel ``expected`` came from
    (eager after a loss asked for attention maps), so the check compares weights, not kernels."""
    with quiet_transformers():
        reloaded = auto.from_pretrained(folder, local_files_only=True, attn_implementation=attention).eval()
    got = _logits(reloaded, inputs)
    diff = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not diff <= tolerance:
        raise ExportMismatchError(
            f"{folder}: {auto.__name__}.from_pretrained gives logits {tuple(got.shape)} that differ from the "
            f"model's {tuple(expected.shape)} by {diff:.3g} (> {tolerance:g})"
        )
    return diff


def _replace_folder(tmp: Path, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def export_hf(
    model: nn.Module,
    folder: str | Path,
    tokenizer: TokenizerSource | None = None,
    label_names: list[str] | None = None,
    card: CardFacts | None = None,
    inputs: Tensor | Mapping[str, Tensor] | None = None,
    tolerance: float = TOLERANCE,
) -> HFExport:
    """Write ``model`` (a TransformerClassifier or a transformers model) as an HF folder at
    ``folder`` and check it: loaded back with its Auto class, it must give the logits the model
    gives on ``inputs`` (a batch of the model's inputs; default :func:`probe_inputs`) within
    ``tolerance`` (else ExportMismatchError, and no folder). ``model`` itself is not changed.
    ``card``: what the README says of the run (no README without one)."""
    source = hf_model(model)
    auto, tag = auto_class_of(source)
    work = deployable_copy(source)  # eval, CPU, masks folded: the function the model computes
    name = work.main_input_name
    kwargs = probe_inputs(work.config, name) if inputs is None else _as_kwargs(inputs, name)
    expected = _logits(work, kwargs)
    shape = record_shape(work)
    if label_names is not None:
        name_labels(work.config, label_names)
    final = rebuilt(work)
    attention = work.config._attn_implementation
    del work  # a large model is held twice at most
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        written = _write(final, tmp, tokenizer)
        diff = check_reload(tmp, auto, kwargs, expected, tolerance, attention)
        result = HFExport(folder, auto.__name__, diff, shape, written)
        if card is not None:
            (tmp / "README.md").write_text(model_card(card, result.as_dict(), tag))
            result.files = sorted([*written, "README.md"])
        _replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _write(model: PreTrainedModel, folder: Path, tokenizer: TokenizerSource | None) -> list[str]:
    """The model's files (config, safetensors weights, generation config for LMs) and the
    tokenizer's; a language model's generation config takes the tokenizer's padding id (and its
    end-of-text id, where the model names none), so ``generate`` stops and pads as in the run."""
    if tokenizer is not None:
        loaded = save_tokenizer(tokenizer, folder)
        generation = model.generation_config if model.can_generate() else None
        if generation is not None and loaded.pad_token_id is not None:
            generation.pad_token_id = loaded.pad_token_id
        if generation is not None and generation.eos_token_id is None:
            generation.eos_token_id = loaded.eos_token_id
    with quiet_transformers():
        model.save_pretrained(folder)
    return sorted(p.name for p in folder.iterdir())
