"""The batch dict that loaders, Lightning modules, teachers and loss terms pass around.

Every key a batch can hold is listed here, with the part of the code that sets it. A
TypedDict only names the keys: batches stay plain dicts at run time. (``has_label``, which a
text loader hands to TensorDataModule.setup beside its splits, becomes ``labelled`` there and
never reaches a batch.)
"""

from __future__ import annotations

from typing import Any, TypedDict

from torch import Tensor

# Images [B, C, H, W] in [0, 1] (data/images/), or token tensors [B, L]: ``input_ids`` and
# ``attention_mask`` (1 on real tokens), set by the text data (data/tokenizer.py:encode) and the
# corpus (data/language/lm_corpus.py), cut to the longest sequence per batch (tensor_datamodule.trim_padding).
Inputs = Tensor | dict[str, Tensor]


class _EveryBatch(TypedDict):
    # The data module (IndexedTensorDataset.batch); the on-policy batch (teachers/sequences.py)
    # replaces them with the student's sampled sequences.
    inputs: Inputs
    # The data module: class ids [B], a word's tag at its first sub-token [B, L] for token
    # classification (-100 elsewhere: data/text/token_labels.py), or the next token at each
    # position [B, L] for language models; the on-policy batch: the student's sampled next tokens.
    labels: Tensor
    # The data module: each sample's position in its split, stable across epochs, shuffles and
    # DDP shards: what the teacher-output cache (teachers/cache.py) is keyed by.
    index: Tensor


class Batch(_EveryBatch, total=False):
    # Data with domains (DigitsDomainsDataModule, TextDomainsDataModule, from the split's
    # extras): [B] domain ids, which route each sample to its domain's teacher (teachers/ensemble.py).
    domain: Tensor
    # TensorDataModule.setup, with few labels (data.labelled_fraction < 1 or data.unlabelled):
    # [B] bool, the samples whose label a supervised term may read (losses/reduce.label_mask);
    # the on-policy batch: all false (its tokens are the student's, not the data's).
    labelled: Tensor
    # Language-model sequences (teachers/sequences.py: the teacher's stored continuations, from
    # the split's extras, and the on-policy batch): [B, L] bool, the positions the terms read
    # (the generated part, not the prompt). Absent: every position counts.
    mask: Tensor
    # DistillationModule.training_loss with an AdversarialLoss (losses/adversarial.PERTURBED):
    # the student's ModelOutput on the perturbed inputs, read by OnPerturbed terms. Typed Any:
    # models/ sits beside data/ in the layers, so its types are not named here.
    perturbed_out: Any
