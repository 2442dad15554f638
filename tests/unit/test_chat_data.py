"""data=chat: conversations tokenized by a pretrained tokenizer's chat template, labels only on
the assistant's tokens (its end token included), splits, overlong rows, padded batches, and
one-line errors for bad files. A tiny word-level tokenizer with SmolLM2's ChatML template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from conftest import SHARED_DATA
from distillab.core.config import ConfigError
from distillab.data.language.chat import IGNORE, ChatDataModule, EncodedChat, assistant_span, fit_length

# SmolLM2-135M-Instruct's template (read from its GGUF), with a shorter default system prompt.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nbe helpful<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = ["system", "user", "assistant", "\n", "be", "helpful", "math"] + [f"w{i}" for i in range(200)]
VOCAB = {w: i for i, w in enumerate(SPECIAL + WORDS)}
PAD, START, END, NL = VOCAB["<pad>"], VOCAB["<|im_start|>"], VOCAB["<|im_end|>"], VOCAB["\n"]


def ids(text: str) -> list[int]:
    return [VOCAB[w] for w in text.split(" ")]  # "\n" is a token


def save_tokenizer(folder: Path, template: str | None = CHATML, pad: bool = True) -> Path:
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.Split(Regex("\n"), behavior="isolated")]
    )
    kwargs = {"pad_token": "<pad>"} if pad else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<unk>", **kwargs
    )
    if template is not None:
        fast.chat_template = template
    fast.save_pretrained(folder)
    return folder / "tokenizer.json"


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    return save_tokenizer(tmp_path_factory.mktemp("tok"))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def qa_rows(n: int, answer_words: int = 2) -> list[dict]:
    return [
        {"question": f"w{i} w{i + 1}", "answer": " ".join(f"w{(i + k) % 200}" for k in range(answer_words))}
        for i in range(n)
    ]


def module(tokenizer_json: Path, path: Path, **kw) -> ChatDataModule:
    kw = {"val_fraction": 0.25, "test_fraction": 0.25, "max_length": 64, **kw}
    dm = ChatDataModule(str(path), **kw)
    dm.use_tokenizer(tokenizer_json)
    dm.setup()
    return dm


def targets(dm: ChatDataModule, split: str, i: int) -> tuple[list[int], list[int]]:
    """Sample i's input ids (no padding) and its labelled targets."""
    ds = dm.splits[split]
    n = int(ds.inputs["attention_mask"][i].sum())
    labels = ds.labels[i, :n]
    return ds.inputs["input_ids"][i, :n].tolist(), labels[labels != IGNORE].tolist()


def test_single_turn_labels_only_the_response_and_its_end_token(tmp_path, tokenizer_json):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"messages": [{"role": "user", "content": "w1 w2"}, {"role": "assistant", "content": "w3 w4 w5"}]}] * 4,
    )
    dm = module(tokenizer_json, path)
    # By hand: default system turn, user turn, generation prompt, the response, <|im_end|>, \n.
    whole = [START, *ids("system \n be helpful"), END, NL, START, *ids("user \n w1 w2"), END, NL,
             START, *ids("assistant \n"), *ids("w3 w4 w5"), END, NL]  # fmt: skip
    ds = dm.splits["train"]
    assert ds.inputs["input_ids"][0].tolist() == whole[:-1]
    response_at = len(whole) - 5  # first of w3 w4 w5 <|im_end|>
    expected = [IGNORE] * (response_at - 1) + ids("w3 w4 w5") + [END, IGNORE]
    assert ds.labels[0].tolist() == expected
    assert dm.prompts("train")[0] == whole[:response_at]
    assert dm.responses("train")[0] == "w3 w4 w5"
    assert dm.model_kwargs == {"vocab_size": len(VOCAB), "context": 64, "eos_token_id": END}


def test_two_assistant_turns_are_both_labelled_and_the_user_turn_between_is_not(tmp_path, tokenizer_json):
    chat = [
        {"role": "system", "content": "math"},
        {"role": "user", "content": "w1"},
        {"role": "assistant", "content": "w2 w3"},
        {"role": "user", "content": "w4"},
        {"role": "assistant", "content": "w5"},
        {"role": "user", "content": "w6"},  # after the last assistant turn: left out
    ]
    dm = module(tokenizer_json, write_jsonl(tmp_path / "d.jsonl", [{"messages": chat}] * 4))
    inputs, labelled = targets(dm, "train", 0)
    assert labelled == [*ids("w2 w3"), END, *ids("w5"), END]
    assert VOCAB["w6"] not in inputs and VOCAB["be"] not in inputs  # own system turn kept, no default
    # The prompt for generation is the conversation before the last assistant turn.
    prompt = dm.prompts("train")[0]
    assert prompt[-3:] == [START, *ids("assistant \n")] and VOCAB["w4"] in prompt and VOCAB["w5"] not in prompt
    assert dm.responses("train")[0] == "w5"


def test_prompt_and_response_columns_with_a_system_prompt(tmp_path, tokenizer_json):
    path = write_jsonl(tmp_path / "gsm.jsonl", qa_rows(8))
    dm = module(tokenizer_json, path, prompt_column="question", response_column="answer", system_prompt="math")
    rows = dm.rows["train"].tolist()
    for i, row in enumerate(rows):
        inputs, labelled = targets(dm, "train", i)
        assert labelled == [*ids(qa_rows(8)[row]["answer"]), END]
        assert inputs[:4] == [START, *ids("system \n math")]
    assert dm.responses("test") == [qa_rows(8)[r]["answer"] for r in dm.rows["test"].tolist()]


def test_assistant_span_survives_a_merge_across_the_boundary():
    # The prompt's rendering ends in a token that the whole conversation tokenizes differently.
    assert assistant_span([1, 2, 9], [1, 2, 3, 4, 7, 5], [1, 2, 3, 4, 7, 5, 6], end_id=7) == (2, 5)


def test_truncate_keeps_the_prompt_and_cuts_the_response_end(tmp_path, tokenizer_json):
    rows = qa_rows(12, answer_words=2) + qa_rows(12, answer_words=30)
    # Prompt: 7 (system turn) + 7 (user turn) + 3 (generation prompt) = 17 tokens; a short row is
    # 17 + 2 + <|im_end|> + newline = 21, a long one 49.
    for overlong, kept_long in (("truncate", True), ("drop", False)):
        dm = module(
            tokenizer_json, write_jsonl(tmp_path / "d.jsonl", rows), prompt_column="question",
            response_column="answer", max_length=25, overlong=overlong,
        )  # fmt: skip
        counts = {k: sum(c[k] for c in dm.overlong_counts.values()) for k in ("kept", "truncated", "dropped")}
        assert counts == {"kept": 12, "truncated": 12 if kept_long else 0, "dropped": 0 if kept_long else 12}
        assert sum(len(ds) for ds in dm.splits.values()) == (24 if kept_long else 12)
        for split, ds in dm.splits.items():
            assert ds.inputs["input_ids"].shape[1] <= 24
            for i, row in enumerate(dm.rows[split].tolist()):
                _, labelled = targets(dm, split, i)
                answer = ids(rows[row]["answer"])
                # A cut row keeps its 17 prompt tokens and the first 25 - 17 = 8 answer tokens, no end token.
                assert labelled == ([*answer, END] if len(answer) == 2 else answer[:8])
                assert len(dm.prompts(split)[i]) == 17


def test_a_prompt_longer_than_max_length_is_dropped_even_when_truncating(tmp_path, tokenizer_json):
    chat = EncodedChat(tuple(range(10)), ((8, 10),), ((0,) * 8,), ("r",))
    assert fit_length(chat, 8, "truncate") == (None, "dropped")
    cut, what = fit_length(chat, 9, "truncate")
    assert what == "truncated" and cut.ids == tuple(range(9)) and cut.spans == ((8, 9),)
    assert fit_length(chat, 10, "drop") == (chat, "kept")


def test_splits_have_their_sizes_and_follow_the_seed(tmp_path, tokenizer_json):
    path = write_jsonl(tmp_path / "d.jsonl", qa_rows(40))
    kw = {"prompt_column": "question", "response_column": "answer", "val_fraction": 0.1, "test_fraction": 0.2}
    a, b, c = (module(tokenizer_json, path, split_seed=s, **kw) for s in (0, 0, 1))
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 28, "val": 4, "test": 8}
    assert all(torch.equal(a.rows[k], b.rows[k]) for k in ("train", "val", "test"))
    assert not torch.equal(a.rows["val"], c.rows["val"])
    every = torch.cat([a.rows[k] for k in ("train", "val", "test")]).sort().values
    assert every.tolist() == list(range(40))  # disjoint, and nothing lost
    small = module(tokenizer_json, path, split_seed=0, max_train_samples=5, **kw)
    assert len(small.splits["train"]) == 5 and set(small.rows["train"].tolist()) <= set(a.rows["train"].tolist())
    assert torch.equal(small.rows["val"], a.rows["val"])


def test_test_path_is_the_test_split(tmp_path, tokenizer_json):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(20))
    test = write_jsonl(tmp_path / "test.jsonl", qa_rows(3, answer_words=1))
    dm = module(tokenizer_json, train, test_path=str(test), prompt_column="question", response_column="answer", val_fraction=0.1, test_fraction=0.3)  # fmt: skip
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 18, "val": 2, "test": 3}
    assert dm.responses("test") == ["w0", "w1", "w2"]


def test_padded_batches_mask_and_ignore_the_padding(tmp_path, tokenizer_json):
    rows = [{"question": "w1", "answer": " ".join(["w2"] * k)} for k in (1, 5, 9, 2)] * 2
    dm = module(
        tokenizer_json, write_jsonl(tmp_path / "d.jsonl", rows), prompt_column="question", response_column="answer"
    )
    ds = dm.splits["train"]
    lengths = ds.inputs["attention_mask"].sum(1)
    short = int(lengths.argmin())
    batch = ds.batch(torch.tensor([short]))
    assert batch["inputs"]["input_ids"].shape == batch["labels"].shape == (1, int(lengths[short]))  # trimmed
    full = ds.batch(torch.arange(len(ds)))
    pad = full["inputs"]["attention_mask"] == 0
    assert full["labels"].shape == full["inputs"]["input_ids"].shape
    assert pad.any() and (full["inputs"]["input_ids"][pad] == PAD).all() and (full["labels"][pad] == IGNORE).all()
    # Per row: the real tokens come first, then only padding.
    assert torch.equal(full["inputs"]["attention_mask"], (torch.arange(pad.shape[1]) < lengths[:, None]).long())
    loaded = next(iter(dm.train_dataloader()))
    assert loaded["labels"].shape == loaded["inputs"]["input_ids"].shape


def test_without_a_pad_token_padding_is_eos(tmp_path):
    tok = save_tokenizer(tmp_path / "nopad", pad=False)
    rows = [{"question": "w1", "answer": " ".join(["w2"] * k)} for k in (1, 6)] * 4
    dm = module(tok, write_jsonl(tmp_path / "d.jsonl", rows), prompt_column="question", response_column="answer")
    full = dm.splits["train"].batch(torch.arange(len(dm.splits["train"])))
    assert dm.pad_id == END and (full["inputs"]["input_ids"][full["inputs"]["attention_mask"] == 0] == END).all()


def test_fingerprint_changes_with_the_file_and_the_settings(tmp_path, tokenizer_json):
    path = write_jsonl(tmp_path / "d.jsonl", qa_rows(8))
    kw = {"prompt_column": "question", "response_column": "answer"}
    first = module(tokenizer_json, path, **kw).fingerprint()
    assert module(tokenizer_json, path, **kw).fingerprint() == first
    assert module(tokenizer_json, path, max_length=63, **kw).fingerprint() != first
    write_jsonl(path, qa_rows(8, answer_words=3))
    assert module(tokenizer_json, path, **kw).fingerprint() != first


def error(tokenizer_json: Path | None, path: Path | None, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        dm = ChatDataModule(None if path is None else str(path), val_fraction=0.25, test_fraction=0.25, **kw)
        if tokenizer_json is not None:
            dm.use_tokenizer(tokenizer_json)
        dm.setup()
    assert "\n" not in str(err.value)
    return err.value


GOOD = [{"role": "user", "content": "w1"}, {"role": "assistant", "content": "w2"}]


@pytest.mark.parametrize(
    "rows, kw, key, words",
    [
        (None, {}, "path", "no such file"),
        ([{"messages": GOOD}] * 4, {"messages_column": "chat"}, "messages_column", "its columns: messages"),
        (
            [{"q": "w1", "a": "w2"}] * 4,
            {"prompt_column": "question", "response_column": "a"},
            "prompt_column",
            "its columns: q, a",
        ),
        ([{"messages": [{"role": "bot", "content": "w1"}, GOOD[1]]}], {}, "messages_column", "unknown role 'bot'"),
        ([{"messages": [GOOD[0], {"role": "assistant", "content": " "}]}], {}, "messages_column", "empty response"),
        ([{"q": "w1", "a": ""}], {"prompt_column": "q", "response_column": "a"}, "response_column", "empty response"),
        ([{"messages": [GOOD[0]]}], {}, "messages_column", "no assistant turn"),
        ([{"messages": GOOD}, ["not", "a", "row"]], {}, "path", "row 1 is not an object"),
    ],
)
def test_bad_files_stop_with_one_line_naming_the_key(tmp_path, tokenizer_json, rows, kw, key, words):
    path = tmp_path / "d.jsonl" if rows is None else write_jsonl(tmp_path / "d.jsonl", rows)
    err = error(tokenizer_json, path, **kw)
    assert err.key == key and words in str(err)


def test_a_tokenizer_without_a_chat_template_or_none_at_all_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": GOOD}] * 4)
    err = error(save_tokenizer(tmp_path / "plain", template=None), path)
    assert err.key == "tokenizer" and "no chat template" in str(err)
    err = error(None, path)
    assert err.key == "tokenizer" and "model.teacher.pretrained" in str(err)


def test_a_bad_suffix_is_an_error_and_parquet_needs_pyarrow(tmp_path, tokenizer_json):
    bad = tmp_path / "d.csv"
    bad.write_text("a\n")
    assert error(None, bad).key == "path"
    path = tmp_path / "d.parquet"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        assert "pip install pyarrow" in str(error(tokenizer_json, path))
        return
    pq.write_table(pa.Table.from_pylist([{"messages": GOOD}] * 4), path)
    assert module(tokenizer_json, path).responses("train") == ["w2"] * 2


CONF = Path(__file__).resolve().parents[2] / "src" / "distillab" / "conf" / "data"
GSM8K = SHARED_DATA / "gsm8k"


def from_conf(name: str, tokenizer_json: Path, **override) -> ChatDataModule:
    cfg = OmegaConf.merge(
        {"paths": {"data_root": str(SHARED_DATA)}}, {"data": OmegaConf.load(CONF / f"{name}.yaml")}, {"data": override}
    )
    dm = instantiate(cfg.data)
    dm.use_tokenizer(tokenizer_json)
    dm.setup()
    return dm


def test_the_generic_config_reads_a_file_given_as_path(tmp_path, tokenizer_json):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": GOOD}] * 40)
    dm = from_conf("chat", tokenizer_json, path=str(path))
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 36, "val": 2, "test": 2}
    assert error(tokenizer_json, None).key == "path"  # the config's default: null


@pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason=f"real data absent: {GSM8K}")
def test_the_gsm8k_preset_reads_question_and_answer(tokenizer_json):
    dm = from_conf("gsm8k", tokenizer_json, max_train_samples=16)
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 16, "val": 149, "test": 1319}
    first = json.loads((GSM8K / "test.jsonl").read_text().splitlines()[0])
    assert dm.responses("test")[0] == first["answer"] and dm.model_kwargs["context"] == 384


def test_a_template_that_refuses_a_conversation_is_one_line_naming_the_tokenizer(tmp_path):
    refuses = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" + CHATML
    )
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "system", "content": "math"}, *GOOD]}] * 4)
    err = error(save_tokenizer(tmp_path / "gemma_like", template=refuses), path)
    assert err.key == "tokenizer" and "System role not supported" in str(err)


def test_parquet_and_a_datasets_folder_read_the_same_rows_as_jsonl(tmp_path, tokenizer_json):
    datasets = pytest.importorskip("datasets", reason="pip install -e '.[llm]' (datasets, pyarrow)")
    rows = [{"messages": GOOD}] * 4
    from_jsonl = module(tokenizer_json, write_jsonl(tmp_path / "d.jsonl", rows))
    table = datasets.Dataset.from_list(rows)
    table.to_parquet(str(tmp_path / "d.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))
    for path in (tmp_path / "d.parquet", tmp_path / "saved"):
        dm = module(tokenizer_json, path)
        assert dm.responses("train") == from_jsonl.responses("train") == ["w2"] * 2
        assert torch.equal(dm.splits["train"].labels, from_jsonl.splits["train"].labels)


def test_max_test_samples_keeps_the_first_test_rows_in_file_order(tmp_path, tokenizer_json):
    rows = qa_rows(10)
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    qa = {"prompt_column": "question", "response_column": "answer", "test_path": str(test)}
    dm = module(tokenizer_json, write_jsonl(tmp_path / "d.jsonl", qa_rows(12)), max_test_samples=3, **qa)
    full = module(tokenizer_json, write_jsonl(tmp_path / "e.jsonl", qa_rows(12)), **qa)
    assert dm.responses("test") == full.responses("test")[:3] and len(full.responses("test")) == 10
