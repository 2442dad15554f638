"""GGUF files (llama.cpp's quantized format) converted once to a stored HF folder.

transformers reads a GGUF (``from_pretrained(folder, gguf_file=name)``) by dequantizing every
tensor to float32, which takes ~20 s for a 135M-parameter model; the same weights saved as
safetensors load in 0.1 s. So a GGUF is converted once into ``<converted_dir>/<key>/`` (key:
the first 16 hex digits of the file's SHA-256) holding ``config.json`` (without the GGUF
``quantization_config``), ``generation_config.json``, ``model.safetensors`` and the tokenizer
the file describes (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``),
and every later run reads that folder.

The folder is written atomically under a lock (:mod:`distillab.core.entries`): parallel jobs
convert once, a half-written or damaged folder is never read (it is converted again).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from transformers.utils import logging as hf_logging

from distillab.core.entries import MANIFEST, atomic_entry, file_lock, verify_entry

log = logging.getLogger(__name__)

GGUF_PREFIX = "gguf:"
GGUF_SUFFIX = ".gguf"
# What transformers needs to read a GGUF: the reader (gguf) and the loading of the dequantized
# weights into an empty model (accelerate).
GGUF_PACKAGES = ("gguf", "accelerate")
LLM_EXTRA = "pip install -e '.[llm]'"


def missing_gguf_packages() -> list[str]:
    """The packages of :data:`GGUF_PACKAGES` that are not installed."""
    return [name for name in GGUF_PACKAGES if importlib.util.find_spec(name) is None]


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' load report and progress bars off inside the block (our own log line
    says what matters), its settings back after it."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def convert_gguf(gguf_file: Path, folder: Path) -> None:
    """Write the model and tokenizer ``gguf_file`` holds into ``folder`` as an HF folder
    (float32 safetensors, the GGUF's quantization config dropped so it loads as a plain model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, local_files_only=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, local_files_only=True)
    # The weights are already dequantized; with the quantization config kept, a reload would
    # look for the GGUF again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # The weights arrive through a private temporary file (mode 0600); the stored folder is
    # shared like the teacher store, so its files get the usual permissions.
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~mask)


@lru_cache(maxsize=8)
def _verified(entry: Path, stats: tuple[tuple[str, int, int], ...]) -> str | None:
    # Hashing a 540 MB safetensors file takes ~1.5 s: once per process and entry. Every file's
    # size and mtime are in the key, so a file written again is checked again.
    return verify_entry(entry)


def _problem(entry: Path) -> str | None:
    """What is wrong with the stored folder ``entry``, or None (:func:`verify_entry`)."""
    if not (entry / MANIFEST).is_file():
        return "incomplete (no readable manifest)"
    files = sorted(p for p in entry.iterdir() if p.is_file())
    return _verified(entry, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


_said: set[Path] = set()


def converted_folder(gguf_file: Path, converted_dir: Path, key: str) -> Path:
    """``converted_dir/key``, converted from ``gguf_file`` by the first process that needs it
    (``key``: the file's content hash, so a changed file is converted again)."""
    entry = converted_dir / key
    with file_lock(converted_dir / f".{key}.lock"):
        if entry.exists():
            problem = _problem(entry)
            if problem is None:
                if entry not in _said:  # once per process: a run resolves its folder several times
                    log.info("reusing %s, converted from %s", entry, gguf_file)
                    _said.add(entry)
                return entry
            log.warning("converted folder %s is %s; converting %s again", entry, problem, gguf_file)
        start = time.perf_counter()
        # Converted into a scratch folder first: which files the tokenizer writes is known only
        # afterwards, and the entry's manifest must name them all.
        scratch = converted_dir / f".convert-{key}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            convert_gguf(gguf_file, scratch)
            names = tuple(sorted(p.name for p in scratch.iterdir() if p.is_file()))
            with atomic_entry(converted_dir, key, checked=names) as tmp:
                for name in names:
                    os.replace(scratch / name, tmp / name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("converted %s to %s in %.1f s", gguf_file, entry, time.perf_counter() - start)
        _said.add(entry)
    return entry
