"""Causal language models (HF GPT-2 and Llama classes) from shape keys or a local folder.

A causal LM returns next-token logits [batch, seq, vocab] through the same adapter as the
classifiers (:class:`~distillab.models.output.TransformerClassifier`, inputs ``input_ids``
and ``attention_mask``), so every loss term reads it the same way: GPT-2 (Radford et al.
2019: learned positions, GELU MLP, LayerNorm) or Llama (Touvron et al. 2023: rotary
positions, SwiGLU MLP, RMSNorm, optional grouped-query attention).
"""

from __future__ import annotations

import logging

from tokenizers import Tokenizer
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from distillab.core.config import ConfigError, check_choice, check_int, check_number
from distillab.models.encoder_shape import check_head_width, check_layers, hf_shape
from distillab.models.gguf import quiet_transformers
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import TOKENIZER_FILE, read_config, resolve_pretrained

log = logging.getLogger(__name__)

ARCHITECTURES = ("gpt2", "llama")


def build_causal_lm(
    vocab_size: int,
    context: int,
    architecture: str = "gpt2",
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    num_kv_heads: int | None = None,
    dropout: float = 0.0,
    tie_embeddings: bool = True,
    eos_token_id: int | None = None,
    pretrained: str | None = None,
    converted_dir: str | None = None,
) -> TransformerClassifier:
    """A GPT-2 or Llama shaped LM; ``vocab_size`` and ``context`` come from the data (its
    tokenizer and block size). ``intermediate_size`` defaults to 4 × hidden (GPT-2) or the
    SwiGLU width ⌈8/3 × hidden⌉ rounded up to a multiple of 32 (Llama). ``eos_token_id``: the
    tokenizer's end-of-text id (for generation).

    ``pretrained`` (the shape keys are then unused): a local HF folder, ``package:<module>/<sub>``
    or a GGUF file (``gguf:<path>``, ``package:<module>/<file>.gguf``) converted once into
    ``converted_dir`` (:func:`~distillab.models.pretrained.resolve_pretrained`); nothing is
    downloaded. The model keeps its own vocabulary: the data's must be it (read with the
    folder's tokenizer), and its context must fit the model's positions."""
    check_int("vocab_size", vocab_size, low=2)
    check_int("context", context, low=1)
    if pretrained:
        return _from_folder(pretrained, vocab_size, context, converted_dir)
    check_choice("architecture", architecture, ARCHITECTURES)
    check_layers(hidden_size, num_layers, num_heads)
    check_number("dropout", dropout, low=0, high=1, high_open=True)
    check_choice("tie_embeddings", tie_embeddings, (True, False))
    check_head_width(hidden_size, num_heads)
    # What both architectures set alike: the vocabulary, tied embeddings, the end-of-text id.
    shared = dict(
        vocab_size=vocab_size,
        tie_word_embeddings=tie_embeddings,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
    )
    if architecture == "gpt2":
        config = GPT2Config(
            n_positions=context,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=_width(intermediate_size, 4 * hidden_size),
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            **shared,
        )
        return TransformerClassifier(GPT2LMHeadModel(config), "input_ids")
    kv = check_int("num_kv_heads", num_kv_heads, low=1) if num_kv_heads else num_heads
    if num_heads % kv:
        raise ConfigError("num_kv_heads", kv, f"must divide num_heads={num_heads} (grouped-query attention)")
    width = _width(intermediate_size, -(-8 * hidden_size // 3 // 32) * 32)
    config = LlamaConfig(
        max_position_embeddings=context,
        num_key_value_heads=kv,
        **hf_shape(hidden_size, num_layers, num_heads, width),
        attention_dropout=dropout,
        pad_token_id=None,
        **shared,
    )
    return TransformerClassifier(LlamaForCausalLM(config), "input_ids")


def _width(intermediate_size: int | None, default: int) -> int:
    """The MLP width asked for, or the architecture's default when none is."""
    return check_int("intermediate_size", intermediate_size, low=1) if intermediate_size else default


def _from_folder(pretrained: str, vocab_size: int, context: int, converted_dir: str | None) -> TransformerClassifier:
    folder = resolve_pretrained(pretrained, converted_dir)
    config = read_config(folder, pretrained)  # a broken config.json: one line naming the folder
    tokenizer = folder / TOKENIZER_FILE
    own = Tokenizer.from_file(str(tokenizer)).get_vocab_size(with_added_tokens=True) if tokenizer.is_file() else None
    problem = vocabulary_problem(config.vocab_size, vocab_size, own)
    if problem:
        raise ConfigError("pretrained", pretrained, problem)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if positions is not None and positions < context:
        raise ConfigError(
            "pretrained", pretrained, f"holds {positions} positions; the data's blocks are {context} long"
        )
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    log.info("loaded %s from %s (%s parameters)", type(model).__name__, folder, f"{model.num_parameters():,}")
    return TransformerClassifier(model, "input_ids")


def vocabulary_problem(model_vocab: int, data_vocab: int, own_tokenizer: int | None) -> str | None:
    """Why a pretrained LM with ``model_vocab`` embedding rows cannot read the data's
    ``data_vocab`` token ids, or None. Fewer data tokens than rows is fine only when the data
    use the folder's own tokenizer (``own_tokenizer``: its size, with added tokens) and the
    extra rows are padding (embedding matrices are often rounded up to a multiple of 64)."""
    if data_vocab == model_vocab:
        return None
    if data_vocab > model_vocab:
        return f"has a vocabulary of {model_vocab} tokens; the data's tokenizer has {data_vocab}"
    if own_tokenizer == data_vocab:
        return None
    mine = "no tokenizer.json" if own_tokenizer is None else f"a tokenizer of {own_tokenizer} tokens"
    return (
        f"has a vocabulary of {model_vocab} tokens and {mine}; the data's tokenizer has {data_vocab}: the "
        "data must be tokenized with the model's own tokenizer (a smaller one is allowed only as the "
        "folder's tokenizer with padded embedding rows)"
    )


def check_same_vocabulary(
    teacher: TransformerClassifier, student: TransformerClassifier, key: str = "model.student"
) -> None:
    """Token-level distillation compares distributions over one vocabulary: both models must have it."""
    t, s = teacher.model.config.vocab_size, student.model.config.vocab_size
    if t != s:
        raise ConfigError(
            key,
            f"vocab_size={s}",
            f"must equal the teacher's vocabulary ({t} tokens): token-level "
            "losses compare the two next-token distributions position by position",
        )
