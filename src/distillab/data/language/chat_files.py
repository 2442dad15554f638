"""Instruction and chat data read from files: rows, checked, turned into conversations (pure
functions; the data module that tokenizes them is :mod:`distillab.data.language.chat`).

A file is JSON Lines (``.jsonl``: one object a line, GSM8K's format), JSON (``.json``: a list of
objects), Parquet (``.parquet``, read with ``pyarrow``) or a folder written by ``datasets``'
``save_to_disk``, read by :mod:`distillab.data.row_files` (the reader every data module shares;
``check_path`` and ``read_rows`` are its). A conversation is a list of ``{"role", "content"}`` messages
(``system``, ``user``, ``assistant``), taken from one column of lists or built from a prompt and a
response column (GSM8K's ``question`` / ``answer``). Every bad row stops with one line naming the
config key, the row and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillab.core.config import ConfigError
from distillab.data.row_files import check_column, check_path, read_rows

# check_path and read_rows are the chat data module's readers too (chat.py imports them here).
__all__ = ["Message", "check_path", "conversations", "read_rows"]

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


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
