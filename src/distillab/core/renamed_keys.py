"""Config keys that moved to their own group: an old name stops the run with one line naming
the new one, on the command line (before Hydra composes) or in a user's own config file.

The README's "Renamed keys" table lists the same pairs.
"""

from __future__ import annotations

from collections.abc import Iterable

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError

# old -> new; a key under an old section moves with it (sequences.top_k -> lm.sequences.top_k).
RENAMED: dict[str, str] = {
    "teacher.cache": "cache.mode",
    "teacher.cache_budget_mb": "cache.budget_mb",
    "teacher.cache_topk": "cache.topk",
    "teacher.cache_samples": "cache.samples",
    "quantize": "compression.quantize",
    "export.onnx": "compression.onnx",
    "export": "compression.onnx",
    "compression_report": "compression.report",
    "sequences": "lm.sequences",
    "generations": "lm.generations",
}


def new_name(key: str) -> str | None:
    """The key's name now, if ``key`` is (or lies under) a renamed one; else None."""
    if key in RENAMED:
        return RENAMED[key]
    for old in sorted(RENAMED, key=len, reverse=True):
        if key.startswith(old + ".") and old != "export":
            return RENAMED[old] + key[len(old) :]
    return None


def check_overrides(overrides: Iterable[str]) -> None:
    """Command-line ``key=value`` overrides (``+key``, ``++key``, ``~key`` too) that use an old name."""
    for override in overrides:
        if override.startswith("-") or "=" not in override and not override.startswith("~"):
            continue  # a flag (-m, --help) or a bare group name
        key, _, value = override.lstrip("+~").partition("=")
        renamed = new_name(key)
        if renamed is not None:
            raise ConfigError(key, value, f"was renamed: use {renamed}={value} (README: renamed keys)")


def check_config(cfg: DictConfig) -> None:
    """A composed config (from a user's own experiment or config file) that still sets an old key."""
    for old in RENAMED:
        section, _, leaf = old.rpartition(".")
        node = OmegaConf.select(cfg, section) if section else cfg
        if isinstance(node, DictConfig) and leaf in node:
            value = node[leaf]
            shown = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
            raise ConfigError(old, shown, f"was renamed: set {RENAMED[old]} instead (README: renamed keys)")
