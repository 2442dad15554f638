"""A pretrained model's own HF tokenizer (special tokens, chat template), read from its folder.

What a data module needs beyond the ``tokenizers.Tokenizer`` of a ``tokenizer.json``: the
tokenizer_config.json beside it names the special tokens and the chat template
(``chat_template.jinja``) that turns a conversation into the text the model was tuned on.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from distillab.core.config import ConfigError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_hf_tokenizer(path: Any, key: str = "tokenizer") -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` over a local folder, or over the folder of a ``tokenizer.json`` given
    instead (what :class:`~distillab.data.abilities.TakesTokenizer` hands a data module).
    ``key``: the config key named when the folder holds no tokenizer."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(key, path, "must be a tokenizer folder or its tokenizer.json")
    folder = Path(path).expanduser()
    if folder.is_file():
        folder = folder.parent
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(key, str(path), f"holds no HF tokenizer (no {' or '.join(TOKENIZER_FILES)} in {folder})")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)
