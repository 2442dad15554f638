"""The run's tokenizer beside the exported model, as transformers' own tokenizer files.

A student reads the token ids of one tokenizer, and a folder without it is no model anyone
can use. That tokenizer is a pretrained model's (its folder's files are re-saved through
``AutoTokenizer``, so its special tokens and chat template travel too), or one the data
trained here: a WordPiece (data/tokenizer.py) or a byte-level BPE (data/language/bpe.py),
stored as a bare ``tokenizer.json``, which is wrapped in ``PreTrainedTokenizerFast`` with its
special tokens named so that ``AutoTokenizer.from_pretrained(<folder>)`` gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from distillab.data.abilities import TakesTokenizer
from distillab.data.language.bpe import EOS_TOKEN, PAD_TOKEN
from distillab.data.language.lm_corpus import CorpusDataModule
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.data.text.tokenized import TokenizedTextDataModule
from distillab.models.gguf import quiet_transformers

# data/tokenizer.py's SPECIAL_TOKENS under the names transformers gives them.
WORDPIECE_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
# data/language/bpe.py's: documents are joined by eos, which also begins a generation.
BPE_SPECIALS = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}


@dataclass(frozen=True)
class TokenizerSource:
    """A pretrained tokenizer's ``folder``, or a tokenizer ``trained`` here with its ``specials``."""

    folder: Path | None = None
    trained: Tokenizer | None = None
    specials: dict[str, str] = field(default_factory=dict)
    max_length: int | None = None  # the longest input the model was trained on

    def load(self) -> PreTrainedTokenizerBase:
        if self.folder is not None:
            with quiet_transformers():
                return AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        # A copy without the data's fixed-length padding and truncation: a user's call sets its own.
        backend = Tokenizer.from_str(self.trained.to_str())
        backend.no_padding()
        backend.no_truncation()
        extra = {"model_max_length": self.max_length} if self.max_length else {}
        return PreTrainedTokenizerFast(tokenizer_object=backend, **self.specials, **extra)


def tokenizer_of(datamodule: TensorDataModule) -> TokenizerSource | None:
    """The tokenizer the data module's token ids come from; None for images."""
    if isinstance(datamodule, TakesTokenizer) and datamodule.tokenizer_file is not None:
        return TokenizerSource(folder=Path(datamodule.tokenizer_file).parent)
    if isinstance(datamodule, TokenizedTextDataModule):
        datamodule.setup()
        return TokenizerSource(
            trained=datamodule.tokenizer, specials=WORDPIECE_SPECIALS, max_length=datamodule.max_length
        )
    if isinstance(datamodule, CorpusDataModule):
        datamodule.setup()
        return TokenizerSource(trained=datamodule.tokenizer, specials=BPE_SPECIALS, max_length=datamodule.block_size)
    return None


def label_names_of(datamodule: TensorDataModule) -> list[str] | None:
    """The class names of text classification data (images and corpora name none)."""
    return list(datamodule.label_names) if isinstance(datamodule, TokenizedTextDataModule) else None


def save_tokenizer(source: TokenizerSource, folder: Path) -> PreTrainedTokenizerBase:
    """Write the tokenizer's files (tokenizer.json, tokenizer_config.json, a chat template when
    it has one) into ``folder``; returns the tokenizer."""
    tokenizer = source.load()
    tokenizer.save_pretrained(folder)
    return tokenizer
