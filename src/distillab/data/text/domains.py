"""Several text data sets side by side, one domain each, for cross-domain distillation.

``domains`` maps a name to the per-file keys of :class:`TextClassificationDataModule`
(``data_dir``, ``train_file``, ``val_file``, ``test_file``, ``text_column``, ``label_column``,
``header``, ``delimiter``, ``labels``, ``max_train_samples``, ``format``, ``load_from_disk``). Label spaces are kept apart:
domain ``sst2``'s label ``1`` becomes ``"sst2:1"``, and each domain's ids follow the
previous domain's, so a teacher of one domain never shares a class with another's. One
WordPiece vocabulary is trained on all domains' training texts. Every split is the domains'
splits one after the other, with the domain id (the position in ``domains``) in the batch
as ``"domain"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from distillab.core.config import ConfigError, section
from distillab.data.text.files import (
    SPLIT_FILES,
    TextFiles,
    TextSplits,
    read_text_splits,
    splits_fingerprint,
    subset_train,
    text_files,
)
from distillab.data.text.tokenized import LabelledTextDataModule, tokenize_splits

log = logging.getLogger(__name__)

FILE_KEYS = tuple(field.name for field in fields(TextFiles))


def _domain_files(domains: Any) -> dict[str, TextFiles]:
    if not isinstance(domains, Mapping) or len(domains) < 2:
        raise ConfigError(
            "domains",
            domains,
            "must map at least two domain names to their files (for one data set use TextClassificationDataModule)",
        )
    files = {}
    for name, keys in domains.items():
        if not isinstance(name, str) or not name or not isinstance(keys, Mapping):
            raise ConfigError(f"domains.{name}", keys, "must be a mapping of file keys under a non-empty name")
        unknown = sorted(set(keys) - set(FILE_KEYS))
        if unknown:
            raise ConfigError(
                f"domains.{name}.{unknown[0]}",
                keys[unknown[0]],
                f"is not a per-domain key; allowed: {', '.join(FILE_KEYS)}",
            )
        with section(f"domains.{name}"):
            files[name] = text_files(**keys)
    return files


def join_domains(parts: Mapping[str, TextSplits]) -> tuple[TextSplits, dict[str, Tensor]]:
    """The domains' splits concatenated, labels renamed ``<domain>:<label>`` and offset so
    they do not overlap; and each split's domain ids."""
    names: list[str] = []
    texts: dict[str, list[str]] = {split: [] for split in SPLIT_FILES}
    labels: dict[str, list[Tensor]] = {split: [] for split in SPLIT_FILES}
    domains: dict[str, list[Tensor]] = {split: [] for split in SPLIT_FILES}
    for d, (domain, part) in enumerate(parts.items()):
        offset = len(names)
        names += [f"{domain}:{label}" for label in part.label_names]
        for split in SPLIT_FILES:
            texts[split] += part.texts[split]
            labels[split].append(part.labels[split] + offset)
            domains[split].append(torch.full((len(part.labels[split]),), d, dtype=torch.long))
    joined = TextSplits(names, texts, {split: torch.cat(labels[split]) for split in SPLIT_FILES})
    return joined, {split: torch.cat(domains[split]) for split in SPLIT_FILES}


class TextDomainsDataModule(LabelledTextDataModule):
    """Several text data sets, one domain each, sharing one tokenizer."""

    # Each domain's file keys, labels and subset: all in the joined rows the store key hashes.
    location_keys = ("domains",)

    def __init__(
        self,
        domains: Mapping[str, Mapping[str, Any]],
        val_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 64,
        vocab_size: int = 8000,
        lowercase: bool = True,
        tokenizer_dir: str = "outputs/teachers/tokenizers",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.files = _domain_files(domains)
        self.domain_names = list(self.files)
        self.num_domains = len(self.domain_names)
        self.keep_text_knobs(val_fraction, split_seed, max_length, vocab_size, lowercase, tokenizer_dir)

    # The same as one data set's: the number of labels, the tokenizer's real size, max_length.
    def restricted_to_domain(self, domain: int) -> TextDomainsDataModule:
        view = super().restricted_to_domain(domain)
        # Keep the raw texts aligned with the view's tensors (a bag-of-words baseline reads them).
        view.texts = {}
        for split, texts in self.texts.items():
            domains = self.splits[split].extras["domain"].tolist()
            view.texts[split] = [text for text, d in zip(texts, domains) if d == domain]
        return view

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]]:
        raw = {}
        for name, files in self.files.items():
            with section(f"domains.{name}"):
                raw[name] = read_text_splits(files, self.val_fraction, self.split_seed)
        # One vocabulary for all domains, from every domain's whole training split.
        all_train = [text for part in raw.values() for text in part.texts["train"]]
        self.tokenizer = self.load_tokenizer(all_train)
        for name, files in self.files.items():
            with section(f"domains.{name}"):
                raw[name] = subset_train(raw[name], files.max_train_samples, self.split_seed)
        joined, domain_ids = join_domains(raw)
        self.rows_key = splits_fingerprint(joined)  # domain d's labels are offset: the ids say the domain
        self.texts, self.label_names, self.num_classes = joined.texts, joined.label_names, len(joined.label_names)
        inputs = tokenize_splits(joined.texts, self.tokenizer, self.max_length)
        log.info(
            "text domains %s: %s samples, labels %s",
            self.domain_names,
            {k: len(v) for k, v in joined.labels.items()},
            self.label_names,
        )
        return {split: (inputs[split], joined.labels[split], {"domain": domain_ids[split]}) for split in SPLIT_FILES}
