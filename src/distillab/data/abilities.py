"""What some data modules can do beyond TensorDataModule, as mixins a caller tests with isinstance.

A data module inherits the abilities it has; code that needs one asks
``isinstance(datamodule, Ability)`` instead of probing for an attribute.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


class ImageData:
    """Square images [N, num_channels, image_size, image_size] in [0, 1] (what a pixel shift or
    an L∞ attack on pixels acts on)."""

    image_size: int
    num_channels: int


class TakesTokenizer(ABC):
    """Text that can be tokenized by a pretrained model's own ``tokenizer.json`` instead of a
    tokenizer trained on the data (a pretrained model reads only the ids of its vocabulary)."""

    tokenizer_file: Path | None = None  # set by use_tokenizer; None: the data's own tokenizer

    @abstractmethod
    def use_tokenizer(self, path: Path) -> None:
        """Tokenize with ``path`` from now on; called before the data are set up."""


class LabelledTexts(ABC):
    """Classification data made of raw texts, which a text baseline (bag of words) can read."""

    @abstractmethod
    def labelled_texts(self) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
        """Each split's texts and label ids, without the rows that have no label."""
