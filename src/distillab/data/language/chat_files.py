"""Instruction and chat data read from files: rows, checked, turned into conversations (pure
functions; the data module that tokenizes them is :mod:`distillab.data.language.chat`).

A file is JSON Lines (``.jsonl``: one object a line, GSM8K's format), JSON (``.json``: a list of
objects), Parquet (``.parquet``, read with ``pyarrow``) or a folder written by ``datasets``'
``save_to_disk`` (read with ``datasets.load_from_disk``); the last two need their package, and
say so when it is missing. A conversation is a list of ``{"role", "content"}`` messages
(``system``, ``user``, ``assistant``), taken from one column of lists or built from a prompt and a
response column (GSM8K's ``question`` / ``answer``). Every bad row stops with one line naming the
config key, the row and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillab.core.config import ConfigError

ROLES = ("system", "user", "assistant")
SUFFIXES = (".jsonl", ".json", ".parquet")
Message = dict[str, str]


def check_path(key: str, value: Any) -> Path:
    """``value`` as an existing .jsonl/.json/.parquet file or a ``save_to_disk`` folder."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(key, value, "must be a .jsonl, .json or .parquet file or a datasets save_to_disk folder")
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        if not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
            raise ConfigError(key, str(path), "is a folder but not one written by datasets' save_to_disk")
        return path
    if not path.is_file():
        raise ConfigError(key, str(path), "no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(key, str(path), f"must end in {', '.join(SUFFIXES)} (or be a save_to_disk folder)")
    return path


def read_rows(path: Path, key: str = "path") -> list[dict[str, Any]]:
    """The rows of ``path`` (see :func:`check_path`) as dicts, in file order."""
    if path.is_dir():
        rows = _read_saved_dataset(path, key)
    elif path.suffix.lower() == ".jsonl":
        rows = _read_jsonl(path, key)
    elif path.suffix.lower() == ".json":
        rows = _read_json(path, key)
    else:
        rows = _read_parquet(path, key)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConfigError(key, str(path), f"row {i} is not an object (a {type(row).__name__})")
    if not rows:
        raise ConfigError(key, str(path), "has no rows")
    return [dict(row) for row in rows]


def _text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(key, str(path), f"is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _read_jsonl(path: Path, key: str) -> list[Any]:
    rows = []
    for line_no, line in enumerate(_text(path, key).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(key, str(path), f"line {line_no} is not JSON ({err.msg})") from None
    return rows


def _read_json(path: Path, key: str) -> list[Any]:
    try:
        data = json.loads(_text(path, key))
    except json.JSONDecodeError as err:
        raise ConfigError(key, str(path), f"is not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list):
        raise ConfigError(key, str(path), f"must hold a JSON list of row objects, not a {type(data).__name__}")
    return data


def _read_parquet(path: Path, key: str) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(key, str(path), "reading .parquet needs pyarrow (pip install pyarrow)") from None
    return pq.read_table(path).to_pylist()


def _read_saved_dataset(path: Path, key: str) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            key, str(path), "reading a save_to_disk folder needs datasets (pip install datasets)"
        ) from None
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        raise ConfigError(
            key, str(path), f"holds several splits ({', '.join(data)}): give the folder of one, e.g. {path}/train"
        )
    return data.to_list()


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The column names of the rows, in first-seen order."""
    return list(dict.fromkeys(name for row in rows for name in row))


def check_column(key: str, name: Any, rows: Sequence[Mapping[str, Any]], path: Path) -> str:
    """``name`` as a column that every row has."""
    if not isinstance(name, str) or not name:
        raise ConfigError(key, name, "must be a column name")
    for i, row in enumerate(rows):
        if name not in row:
            where = "no such column" if i == 0 else f"row {i} has no such column"
            raise ConfigError(key, name, f"{where} in {path} (its columns: {', '.join(columns_of(rows[i : i + 1]))})")
    return name


def check_messages(key: str, i: int, value: Any) -> list[Message]:
    """Row ``i``'s messages: a list of ``{role, content}`` with known roles, string contents, a
    non-empty content in every assistant turn and at least one assistant turn."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise ConfigError(key, f"row {i}", "must be a non-empty list of {role, content} messages")
    messages = []
    for j, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ConfigError(key, f"row {i}", f"message {j} is not an object with role and content")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ConfigError(
                key, f"row {i}", f"message {j} has an unknown role {role!r} (allowed: {', '.join(ROLES)})"
            )
        if not isinstance(content, str):
            raise ConfigError(key, f"row {i}", f"message {j}'s content is a {type(content).__name__}, not text")
        if role == "assistant" and not content.strip():
            raise ConfigError(key, f"row {i}", f"message {j} is an empty response")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise ConfigError(key, f"row {i}", "has no assistant turn (nothing to learn)")
    return messages


def prompt_response_messages(
    rows: Sequence[Mapping[str, Any]], prompt_column: str, response_column: str
) -> list[list[Message]]:
    """One user turn (``prompt_column``) and one assistant turn (``response_column``) per row."""
    out = []
    for i, row in enumerate(rows):
        prompt, response = row[prompt_column], row[response_column]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError("prompt_column", prompt_column, f"row {i}: the prompt is empty or not text")
        if not isinstance(response, str) or not response.strip():
            raise ConfigError("response_column", response_column, f"row {i}: empty response")
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
    return out


def with_system_prompt(messages: list[Message], system_prompt: str | None) -> list[Message]:
    """``messages`` with ``system_prompt`` first, unless it is None or they start with a system turn."""
    if system_prompt is None or messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def conversations(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    messages_column: str = "messages",
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_prompt: str | None = None,
) -> list[list[Message]]:
    """Each row's conversation, checked: from ``prompt_column``/``response_column`` when they are
    given, else from ``messages_column``; ``system_prompt`` put first where there is no system turn."""
    if (prompt_column is None) != (response_column is None):
        missing = "response_column" if response_column is None else "prompt_column"
        raise ConfigError(missing, None, "prompt_column and response_column go together: give both, or neither")
    if prompt_column is not None:
        prompts = check_column("prompt_column", prompt_column, rows, path)
        responses = check_column("response_column", response_column, rows, path)
    else:
        column = check_column("messages_column", messages_column, rows, path)
    try:
        if prompt_column is not None:
            chats = prompt_response_messages(rows, prompts, responses)
        else:
            chats = [check_messages("messages_column", i, row[column]) for i, row in enumerate(rows)]
    except ConfigError as err:  # which file the row is in (path or test_path)
        raise ConfigError(err.key, err.value, f"{err.allowed} (in {path})") from None
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ConfigError("system_prompt", system_prompt, "must be text or null")
    return [with_system_prompt(chat, system_prompt) for chat in chats]
