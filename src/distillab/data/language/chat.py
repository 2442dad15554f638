"""Instruction and chat data for causal language models, tokenized by a pretrained model's own
HF tokenizer through its chat template; only the assistant's turns are learned.

Each conversation (:mod:`distillab.data.language.chat_files` reads and checks them) is rendered
with the tokenizer's chat template and tokenized once. The tokens of each assistant turn are
found by rendering the conversation prefix by prefix: the template applied to ``messages[:i]``
with ``add_generation_prompt=True`` ends where turn ``i``'s content starts, and applied to
``messages[:i + 1]`` ends after the turn; the common token prefix of each rendering with the whole
conversation gives the span (robust to a tokenization that merges across a boundary: the span
only shrinks by the merged token). A span keeps the turn's end token (ChatML's ``<|im_end|>``, the
tokenizer's eos) and stops there, so the model learns to stop but not the newline after it.

Shifted like the corpus (:mod:`distillab.data.language.lm_corpus`): ``input_ids = ids[:-1]``,
``labels = ids[1:]`` with -100 where the target is not an assistant token, so logits [B, L, V]
line up with labels [B, L] with no shift in the loss, and the loss and perplexity count only
response tokens (the supervised fine-tuning loss of InstructGPT, Ouyang et al. 2022, and
Alpaca). Rows, not tokens, are split into train/val/test by ``split_seed``; batches are padded
to their longest sequence (dynamic padding) and grouped by length for training.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from torch import Tensor

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.core.keys import content_key, file_digest, short_hash
from distillab.data.abilities import TakesTokenizer
from distillab.data.batch import Batch
from distillab.data.hf_tokenizer import load_hf_tokenizer
from distillab.data.language.chat_files import Message, check_path, conversations, read_rows
from distillab.data.tensor_datamodule import IndexedTensorDataset, TensorDataModule

log = logging.getLogger(__name__)

IGNORE = -100  # a label no loss or metric reads (evaluation/lm_metrics.py IGNORE)
SPLITS = ("train", "val", "test")
OVERLONG = ("truncate", "drop")
# Bump when the way conversations become tensors changes, so stored teachers are not reused.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EncodedChat:
    """One conversation as token ids, and where its assistant turns are."""

    ids: tuple[int, ...]  # the whole conversation, chat-templated
    spans: tuple[tuple[int, int], ...]  # [start, end) in ids of each assistant turn (content + end token)
    prompts: tuple[tuple[int, ...], ...]  # per assistant turn: everything before it, with the generation prompt
    responses: tuple[str, ...]  # per assistant turn: its content (the reference text)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    """``messages`` as the text the chat template makes of them."""
    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as err:  # e.g. a template that refuses a system turn (raise_exception)
        roles = ", ".join(m["role"] for m in messages)
        raise ConfigError(
            "tokenizer", getattr(tokenizer, "name_or_path", None), f"its chat template fails on [{roles}]: {err}"
        ) from None


def assistant_span(
    prompt_ids: Sequence[int], turn_ids: Sequence[int], ids: Sequence[int], end_id: int | None
) -> tuple[int, int]:
    """The [start, end) of an assistant turn in ``ids``: from where the prompt's rendering
    (``prompt_ids``) stops matching ``ids`` to where the rendering up to the turn's end
    (``turn_ids``) does, cut after the last ``end_id`` inside (the template's newline after
    ``<|im_end|>`` is not the model's to learn)."""
    start, end = common_prefix(prompt_ids, ids), common_prefix(turn_ids, ids)
    inside = [j for j in range(start, end) if ids[j] == end_id]
    return start, (inside[-1] + 1 if inside else end)


def encode_chats(tokenizer: Any, chats: Sequence[Sequence[Message]]) -> list[EncodedChat]:
    """Every conversation tokenized (no special tokens beyond the template's) with its
    assistant spans, prompts and responses; messages after the last assistant turn are left
    out (they carry no label). Per conversation: the whole, then per assistant turn its prompt
    and (but for the last turn, whose end is the whole) the rendering up to its end."""
    texts: list[str] = []
    turns: list[list[int]] = []  # per chat: the positions of its assistant messages
    for messages in chats:
        where = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        turns.append(where)
        texts.append(render(tokenizer, messages[: where[-1] + 1], False))
        for k, i in enumerate(where):
            texts.append(render(tokenizer, messages[:i], True))
            if k < len(where) - 1:
                texts.append(render(tokenizer, messages[: i + 1], False))
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out, at = [], 0
    for n, (messages, where) in enumerate(zip(chats, turns)):
        ids = encoded[at]
        spans, prompts = [], []
        for k in range(len(where)):
            prompt_ids = encoded[at + 1 + 2 * k]
            turn_ids = encoded[at + 2 + 2 * k] if k < len(where) - 1 else ids
            span = assistant_span(prompt_ids, turn_ids, ids, tokenizer.eos_token_id)
            if span[1] <= span[0]:
                raise ConfigError(
                    "tokenizer",
                    getattr(tokenizer, "name_or_path", None),
                    f"its chat template renders conversation {n}'s assistant message {where[k]} as no tokens",
                )
            spans.append(span)
            prompts.append(tuple(prompt_ids))
        out.append(EncodedChat(tuple(ids), tuple(spans), tuple(prompts), tuple(messages[i]["content"] for i in where)))
        at += 2 * len(where)
    return out


def fit_length(chat: EncodedChat, max_length: int, overlong: str) -> tuple[EncodedChat | None, str]:
    """``chat`` within ``max_length`` tokens, and what was done: ``kept`` (it fits),
    ``truncated`` (its end cut; the turns left with no target token removed) or ``dropped``
    (``overlong=drop``, or a prompt so long that no response token is left)."""
    if len(chat.ids) <= max_length:
        return chat, "kept"
    if overlong == "drop":
        return None, "dropped"
    # A token at position 0 is never a target (labels are ids[1:]), hence max(start, 1).
    turns = [k for k, (s, _) in enumerate(chat.spans) if max(s, 1) < max_length]
    if not turns:
        return None, "dropped"
    cut = replace(
        chat,
        ids=chat.ids[:max_length],
        spans=tuple((chat.spans[k][0], min(chat.spans[k][1], max_length)) for k in turns),
        prompts=tuple(chat.prompts[k] for k in turns),
        responses=tuple(chat.responses[k] for k in turns),
    )
    return cut, "truncated"


def shifted(ids: Sequence[int], spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """``(ids[:-1], labels)``: ``labels[k] = ids[k + 1]`` where that token is in a span, else -100."""
    response = [False] * len(ids)
    for start, end in spans:
        response[start:end] = [True] * (end - start)
    labels = [ids[k + 1] if response[k + 1] else IGNORE for k in range(len(ids) - 1)]
    return list(ids[:-1]), labels


def padded(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    """The rows right-padded with ``value`` to the longest: a LongTensor [N, longest]."""
    longest = max(map(len, rows), default=0)
    return torch.tensor([[*row, *[value] * (longest - len(row))] for row in rows], dtype=torch.long).view(
        len(rows), longest
    )


def chat_tensors(chats: Sequence[EncodedChat], pad_id: int) -> tuple[dict[str, Tensor], Tensor]:
    """``({"input_ids", "attention_mask"}, labels)`` [N, L]: padding has id ``pad_id``, mask 0, label -100."""
    pairs = [shifted(c.ids, c.spans) for c in chats]
    inputs = [p[0] for p in pairs]
    mask = padded([[1] * len(row) for row in inputs], 0)
    return {"input_ids": padded(inputs, pad_id), "attention_mask": mask}, padded([p[1] for p in pairs], IGNORE)


def tokenizer_digest(tokenizer: Any) -> str:
    """Short SHA-256 of the tokenizer's vocabulary and rules, its chat template and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else content_key(sorted(tokenizer.get_vocab().items()))
    specials = [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token]
    return short_hash("\0".join([vocab, str(tokenizer.chat_template), *map(str, specials)]))


def path_digest(path: Path) -> str:
    """SHA-256 of a file, or of every file of a folder (names and contents, sorted)."""
    if path.is_file():
        return file_digest(path)
    return content_key({str(p.relative_to(path)): file_digest(p) for p in sorted(path.rglob("*")) if p.is_file()})


class ChatDataset(IndexedTensorDataset):
    """Token inputs and token labels [N, L], both cut to the batch's longest sequence."""

    def batch(self, idx: Tensor, full_length: bool = False) -> Batch:
        batch = super().batch(idx, full_length)
        batch["labels"] = batch["labels"][:, : batch["inputs"]["input_ids"].shape[1]]
        return batch

    def subset(self, keep: Tensor) -> ChatDataset:
        part = super().subset(keep)
        return ChatDataset(part.inputs, part.labels, part.extras, part.dynamic_padding)


class ChatDataModule(TensorDataModule, TakesTokenizer):
    """Supervised fine-tuning data (prompts and responses, or whole conversations); see the
    module docstring. Needs a pretrained model's tokenizer with a chat template
    (:meth:`use_tokenizer`, called by the run for ``model.teacher.pretrained``)."""

    task = "language_model"
    dynamic_padding = True

    def __init__(
        self,
        path: str,
        messages_column: str = "messages",
        prompt_column: str | None = None,
        response_column: str | None = None,
        system_prompt: str | None = None,
        max_length: int = 512,
        overlong: str = "truncate",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        test_path: str | None = None,
        max_train_samples: int | None = None,
        max_test_samples: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.path = check_path("path", path)
        self.test_path = check_path("test_path", test_path) if test_path is not None else None
        self.messages_column, self.prompt_column, self.response_column = messages_column, prompt_column, response_column
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ConfigError("system_prompt", system_prompt, "must be text or null")
        self.system_prompt = system_prompt
        # 2 at least: one input token and one target.
        self.max_length = check_int("max_length", max_length, low=2)
        self.block_size = self.max_length - 1  # the longest input (what lm.sequences checks against)
        self.overlong = check_choice("overlong", overlong, OVERLONG)
        self.val_fraction = check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
        low_open = self.test_path is None  # a held-out test split is needed unless test_path gives one
        self.test_fraction = check_number(
            "test_fraction", test_fraction, low=0, high=1, low_open=low_open, high_open=True
        )
        if self.test_path is not None:
            self.test_fraction = 0.0
            if test_fraction:
                log.info("data.test_fraction=%s is not used: the test split is data.test_path", test_fraction)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                "test_fraction",
                test_fraction,
                f"val_fraction + test_fraction must be < 1 (val_fraction={val_fraction}), leaving rows to train on",
            )
        self.split_seed = check_int("split_seed", split_seed, low=0)
        if max_train_samples is not None:
            max_train_samples = check_int("max_train_samples", max_train_samples, low=1)
        self.max_train_samples = max_train_samples
        if max_test_samples is not None:
            max_test_samples = check_int("max_test_samples", max_test_samples, low=1)
        self.max_test_samples = max_test_samples
        self.hf_tokenizer: Any = None
        self.tokenizer: Any = None  # the HF tokenizer's tokenizers.Tokenizer (what generation.py reads)
        self.eos_id: int | None = None
        self.pad_id: int | None = None
        self.overlong_counts: dict[str, dict[str, int]] = {}
        self.rows: dict[str, Tensor] = {}  # each split's row positions in its file
        self._prompts: dict[str, list[list[int]]] = {}
        self._responses: dict[str, list[str]] = {}

    def use_tokenizer(self, path: Path) -> None:
        """Tokenize with the pretrained folder of ``path`` (its ``tokenizer.json``, beside it
        ``tokenizer_config.json`` and the chat template). Call before setup."""
        if self.splits:
            raise RuntimeError("use_tokenizer must be called before the data are set up")
        self.tokenizer_file = Path(path)

    def load_tokenizer(self) -> Any:
        if self.tokenizer_file is None:
            raise ConfigError(
                "tokenizer",
                None,
                "data=chat is tokenized by a pretrained model's own tokenizer and chat template: "
                "give a pretrained model (model.teacher.pretrained=<a local HF folder with its tokenizer>)",
            )
        folder = Path(self.tokenizer_file).parent
        tokenizer = load_hf_tokenizer(folder)
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "tokenizer",
                str(folder),
                "has no chat template (tokenizer_config.json chat_template or chat_template.jinja): "
                "give an instruct/chat model's folder",
            )
        if tokenizer.eos_token_id is None:
            raise ConfigError("tokenizer", str(folder), "has no eos token (the end of a response)")
        return tokenizer

    def split_rows(self, n: int, n_test_file: int | None) -> dict[str, Tensor]:
        """Row positions of each split (in file order): one permutation of the ``n`` rows of
        ``path`` drawn with ``split_seed``; the test rows are ``test_path``'s when it is given.
        ``max_train_samples`` keeps the first training rows of the permutation (a random sample),
        ``max_test_samples`` the first test rows in file order."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        train = order[n_val + n_test :]
        if self.max_train_samples is not None:
            if self.max_train_samples > len(train):
                log.warning(
                    "max_train_samples=%d: the training split has only %d rows; using them all",
                    self.max_train_samples,
                    len(train),
                )
            train = train[: self.max_train_samples]
        test = order[n_val : n_val + n_test] if n_test_file is None else torch.arange(n_test_file)
        if self.max_test_samples is not None:  # the first test rows in file order: a fixed, fast evaluation
            test = test.sort().values[: self.max_test_samples]
        return {"train": train.sort().values, "val": order[:n_val].sort().values, "test": test.sort().values}

    def read_chats(self, path: Path, key: str) -> list[list[Message]]:
        return conversations(
            read_rows(path, key),
            path,
            self.messages_column,
            self.prompt_column,
            self.response_column,
            self.system_prompt,
        )

    def load_splits(self) -> dict[str, tuple[dict[str, Tensor], Tensor]]:
        tokenizer = self.load_tokenizer()
        chats = self.read_chats(self.path, "path")
        test_chats = self.read_chats(self.test_path, "test_path") if self.test_path is not None else None
        rows = self.split_rows(len(chats), None if test_chats is None else len(test_chats))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        out, counts = {}, {}
        for split, key in zip(SPLITS, ("val_fraction", "val_fraction", "test_fraction")):
            source = test_chats if split == "test" and test_chats is not None else chats
            encoded = encode_chats(tokenizer, [source[i] for i in rows[split].tolist()])
            fitted = [fit_length(c, self.max_length, self.overlong) for c in encoded]
            counts[split] = {what: sum(1 for _, w in fitted if w == what) for what in ("kept", "truncated", "dropped")}
            kept = [c for c, _ in fitted if c is not None]
            if not kept:
                key = "max_length" if encoded else key  # every row dropped, or none drawn
                raise ConfigError(
                    key,
                    getattr(self, key),
                    f"leaves the {split} split no rows ({len(encoded)} before max_length={self.max_length}, "
                    f"overlong={self.overlong}; {len(chats)} rows in {self.path})",
                )
            rows[split] = rows[split][torch.tensor([c is not None for c, _ in fitted])]
            out[split] = chat_tensors(kept, pad_id)
            self._prompts[split] = [list(c.prompts[-1]) for c in kept]
            self._responses[split] = [c.responses[-1] for c in kept]
        self.hf_tokenizer, self.tokenizer = tokenizer, getattr(tokenizer, "backend_tokenizer", None)
        self.eos_id, self.pad_id = tokenizer.eos_token_id, pad_id
        self.num_classes = len(tokenizer)
        self.rows, self.overlong_counts = rows, counts
        log.info(
            "chat data %s: rows per split %s; overlong=%s at max_length=%d (kept / truncated / dropped): %s",
            self.path.name,
            {split: len(r) for split, r in rows.items()},
            self.overlong,
            self.max_length,
            {split: f"{c['kept']} / {c['truncated']} / {c['dropped']}" for split, c in counts.items()},
        )
        return out

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            super().setup(stage)
            self.splits = {
                k: ChatDataset(ds.inputs, ds.labels, ds.extras, ds.dynamic_padding) for k, ds in self.splits.items()
            }

    def prompts(self, split: str) -> list[list[int]]:
        """Per sample of ``split`` (in its order): the prompt's ids, chat-templated with the
        generation prompt (the conversation before its last assistant turn kept in the sample)."""
        self.setup()
        return copy.deepcopy(self._prompts[split])

    def responses(self, split: str) -> list[str]:
        """Per sample of ``split``: the reference text of the turn :meth:`prompts` asks for."""
        self.setup()
        return list(self._responses[split])

    @property
    def model_kwargs(self) -> dict[str, int]:
        self.setup()
        return {"vocab_size": len(self.hf_tokenizer), "context": self.max_length, "eos_token_id": self.eos_id}

    def fingerprint(self) -> str | None:
        """The tokenizer (vocabulary, template, special tokens), the settings and the files' SHA-256."""
        self.setup()
        settings = {
            k: getattr(self, k)
            for k in (
                "messages_column",
                "prompt_column",
                "response_column",
                "system_prompt",
                "max_length",
                "overlong",
                "val_fraction",
                "test_fraction",
                "split_seed",
                "max_train_samples",
                "max_test_samples",
            )
        }
        files = {"path": path_digest(self.path)}
        if self.test_path is not None:
            files["test_path"] = path_digest(self.test_path)
        return content_key(
            {
                "format": f"chat-v{FORMAT_VERSION}",
                "tokenizer": tokenizer_digest(self.hf_tokenizer),
                "settings": settings,
                "files": files,
            }
        )
