"""Validation of user-facing config values, where they enter.

Every check raises :class:`ConfigError`, whose message names the key, the value given and
what is allowed. Objects built from a config group are built through :func:`build`, which
prefixes the group's path to the key, so ``num_heads`` inside ``model.student`` is reported
as ``model.student.num_heads``.
"""

from __future__ import annotations

import inspect
import math
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that is not allowed. ``key`` is the dotted path to the value."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.allowed)


def check_number(
    key: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a finite number in the interval."""
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
    allowed = "must be a number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, value, allowed)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(key, value, allowed)
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(key, value, allowed)
    return float(value)


def check_int(key: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` after checking it is an integer (not a bool) in [``low``, ``high``]."""
    allowed = (
        "must be an integer"
        + (f" >= {low}" if low is not None else "")
        + (f"{' and' if low is not None else ''} <= {high}" if high is not None else "")
    )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, value, allowed)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(key, value, allowed)
    return value


SEED_END = 2**32  # numpy's RandomState, and so Lightning's seed_everything, takes seeds in [0, 2**32)


def check_seed(key: str, value: Any, count: int = 1) -> int:
    """Return ``value`` after checking that it and the ``count - 1`` seeds after it (models seeded
    ``value``, ``value + 1``, ...) are seeds numpy accepts: integers in [0, 2**32)."""
    return check_int(key, value, low=0, high=SEED_END - count)


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        if len(choices) == 2 and all(isinstance(c, bool) for c in choices):
            raise ConfigError(key, value, "must be true or false")
        raise ConfigError(key, value, f"must be one of {', '.join(map(str, choices))}")
    return value


@contextmanager
def section(prefix: str) -> Iterator[None]:
    """Report ConfigErrors raised inside the block under ``prefix`` (e.g. ``optimizer``)."""
    try:
        yield
    except ConfigError as err:
        raise err.under(prefix) from None


def build(node: DictConfig, section: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that reports config errors with their full key path.

    Hydra wraps exceptions raised by a ``_target_`` in InstantiationException; a
    ConfigError underneath is unwrapped so the user sees one line, not a traceback. So are
    a ``_target_`` that cannot be imported and a key the target does not take.
    """
    if not isinstance(node, DictConfig):  # a value where a section belongs (pruning=fuzz on the command line)
        raise ConfigError(section, node, "must be a config section with a _target_, not a single value")
    try:
        return instantiate(node, **kwargs)
    except ConfigError as err:
        raise err.under(section) from None
    except InstantiationException as err:
        cause = err.__cause__
        # A nested node (a loss term inside a composite loss) is named by Hydra's full_key.
        found = re.search(r"full_key: (\S+)", str(err))
        inner = _relative_key(node, found[1] if found else "")
        prefix = ".".join(p for p in (section, inner) if p)
        if isinstance(cause, ConfigError):
            raise cause.under(prefix) from None
        target = re.search(r"target '([^']+)'", str(err))
        sub = OmegaConf.select(node, inner) if inner else node
        if "Expected a callable target" in str(err):
            raise ConfigError(
                f"{prefix}._target_",
                OmegaConf.select(node, f"{inner}._target_" if inner else "_target_"),
                "must name a class or function to build (module.Name)",
            ) from None
        if isinstance(cause, ImportError) and target:
            raise ConfigError(
                f"{prefix}._target_",
                target[1],
                "cannot be imported: no such class or function, or its module fails to import (check the spelling)",
            ) from None
        if isinstance(cause, TypeError):
            unknown = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
            if unknown and target:
                keys = _parameters(target[1], exclude=kwargs if sub is node else {})
                value = sub.get(unknown[1], "...") if isinstance(sub, DictConfig) else "..."
                raise ConfigError(
                    f"{prefix}.{unknown[1]}",
                    value,
                    f"is not a key of {target[1].rsplit('.', 1)[-1]}"
                    + (f" (its keys: {', '.join(keys)})" if keys else ""),
                ) from None
            # Usually a value of the wrong type.
            raise ConfigError(
                prefix, "...", f"cannot build {target[1] if target else node.get('_target_')}: {cause}"
            ) from None
        raise


def _relative_key(node: DictConfig, full_key: str) -> str:
    """Hydra's ``full_key`` (from the root of ``node``'s config) made relative to ``node``."""
    own = node._get_full_key(None)
    if not own:
        return full_key
    if full_key == own or full_key.startswith((own + ".", own + "[")):
        return full_key[len(own) :].lstrip(".")
    return ""  # a node reached through an interpolation (model.teachers[0]: ${model.teacher})


def _parameters(target: str, exclude: dict[str, Any]) -> list[str]:
    """The keyword parameters of ``target`` a config may set (those the caller passes excluded)."""
    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except (ImportError, TypeError, ValueError):
        return []
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in named and p.name not in exclude]


def check_writable(key: str, path: Path) -> None:
    """A folder the run must write to (or the folder it will be made in), checked before
    anything is trained; nothing is created."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, str(path), f"is not writable ({existing} is a file, not a folder)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(key, str(path), f"is not writable ({err.strerror or err})") from None
