"""Zero-shot multiple-choice accuracy of a causal LM by log-likelihood, as lm-evaluation-harness
scores its ``multiple_choice`` tasks (Gao et al., "A framework for few-shot language model
evaluation", the ``lm_eval`` package: ``HFLM._encode_pair``, ``_loglikelihood_tokens``,
``ConfigurableTask.process_results``).

For a question with context ``c`` and choices ``a_1..a_k``, each scored as the continuation
``x_i = delimiter + a_i``:

    loglik_i  = sum_t log p(x_i[t] | c, x_i[<t])          (over x_i's tokens)
    acc       = [argmax_i loglik_i                == label]
    acc_norm  = [argmax_i loglik_i / chars(a_i)   == label]   (the harness's acc_norm: len(str))
    acc_bytes = [argmax_i loglik_i / bytes(a_i)   == label]   (the harness's acc_bytes: UTF-8 bytes)

The lengths are those of the choice without the delimiter, as the harness's ``doc_to_choice``
gives it; ties go to the first choice (``np.argmax``). Token ids as the harness makes them: the
context's trailing whitespace is moved to the continuation, ``whole = encode(c + x)``,
``ctx = encode(c)``, the continuation's ids are ``whole[len(ctx):]`` and the model reads
``ctx + those`` (an empty context reads the BOS token, else EOS, as the harness's prefix token).
No special tokens are added (``add_special_tokens=False``, the harness's default for causal
models): a tokenizer that would prepend a BOS token does not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillab.core.config import ConfigError, check_int
from distillab.evaluation.piqa import MultipleChoice
from distillab.models.generation import eval_mode, hf_model
from distillab.models.output import TransformerClassifier


@dataclass(frozen=True)
class MultipleChoiceScore:
    """Accuracies over ``n`` questions; ``logliks[q][i]`` is question ``q``'s choice ``i``'s summed
    log-likelihood and ``predictions[q]`` the choice ``acc`` picked (for a report's examples)."""

    acc: float
    acc_norm: float
    acc_bytes: float
    n: int
    logliks: list[tuple[float, ...]] = field(repr=False)
    predictions: list[int] = field(repr=False)

    def as_dict(self) -> dict[str, float | int]:
        return {"acc": self.acc, "acc_norm": self.acc_norm, "acc_bytes": self.acc_bytes, "n": self.n}


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The context's and the continuation's token ids, split as the harness splits them (above)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        # " Paris" is one token but "Answer: " + "Paris" would end the context on a lone space.
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise ConfigError("context", context, "is empty and the tokenizer has no BOS or EOS token to start from")
        return [prefix], _encode(tokenizer, continuation)
    whole, ctx = _encode(tokenizer, context + continuation), _encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


def _context_size(model: PreTrainedModel) -> int | None:
    c = model.config
    return getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)


def _requests(
    tokenizer: PreTrainedTokenizerBase, questions: list[MultipleChoice], context: int | None
) -> list[tuple[list[int], list[int], int]]:
    """One (inputs, next-token targets, continuation length) per choice, question by question: the
    model reads all tokens but the last, and the last ``length`` targets are the continuation's."""
    requests = []
    for q, question in enumerate(questions):
        if not 0 <= question.label < len(question.choices):
            raise ConfigError(
                f"questions[{q}].label", question.label, f"must index one of {len(question.choices)} choices"
            )
        for i, continuation in enumerate(question.continuations):
            ctx, cont = encode_pair(tokenizer, question.context, continuation)
            if not cont:
                raise ConfigError(f"questions[{q}].choices[{i}]", continuation, "encodes to no tokens")
            tokens = ctx + cont
            if context is not None:
                if len(cont) > context:
                    raise ConfigError(
                        f"questions[{q}].choices[{i}]", continuation, f"has {len(cont)} tokens, more than the context"
                    )
                # The harness keeps the last context + 1 tokens: the front of a long context is dropped.
                tokens = tokens[-(context + 1) :]
            requests.append((tokens[:-1], tokens[1:], len(cont)))
    return requests


def _batch_logliks(
    model: PreTrainedModel, batch: list[tuple[list[int], list[int], int]], device: torch.device
) -> Tensor:
    """Summed continuation log-probabilities, one per row, for rows right-padded under a mask
    (right padding leaves every real token at its own position, so no position ids are needed)."""
    width, span = max(len(inp) for inp, _, _ in batch), max(n for _, _, n in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.zeros((len(batch), span), dtype=torch.long)
    starts, lengths = torch.empty(len(batch), dtype=torch.long), torch.empty(len(batch), dtype=torch.long)
    for r, (inp, out, n) in enumerate(batch):
        ids[r, : len(inp)], mask[r, : len(inp)] = torch.tensor(inp), 1
        targets[r, :n] = torch.tensor(out[-n:])
        starts[r], lengths[r] = len(inp) - n, n
    ids, mask, targets, starts, lengths = (t.to(device) for t in (ids, mask, targets, starts, lengths))
    logits = model(input_ids=ids, attention_mask=mask).logits  # [B, W, V]
    steps = torch.arange(span, device=device)
    valid = steps[None] < lengths[:, None]  # [B, S]
    # Position starts + s predicts continuation token s; past a row's end, any in-range position (masked out).
    positions = torch.where(valid, starts[:, None] + steps[None], 0)
    picked = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))  # [B, S, V]
    # float32 before the softmax: bf16 logits would round the sums by ~1e-2.
    logp = torch.log_softmax(picked.float(), dim=-1).gather(2, targets[..., None]).squeeze(-1)
    return (logp * valid).sum(-1)


def _first_argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


@torch.no_grad()
def score_multiple_choice(
    model: TransformerClassifier | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[MultipleChoice],
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> MultipleChoiceScore:
    """``acc``, ``acc_norm`` and ``acc_bytes`` of ``model`` on ``questions`` (module docstring).
    ``batch_size`` continuations per forward pass (longest first, as the harness, so that a batch
    is padded little); the inputs go to ``device`` (None: the model's; the model is not moved)."""
    check_int("batch_size", batch_size, low=1)
    if not questions:
        raise ConfigError("questions", [], "needs at least one question")
    hf = hf_model(model)
    device = torch.device(device) if device is not None else next(hf.parameters()).device
    requests = _requests(tokenizer, questions, _context_size(hf))
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
    flat = [0.0] * len(requests)
    with eval_mode(hf):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, value in zip(chunk, _batch_logliks(hf, [requests[i] for i in chunk], device).tolist(), strict=True):
                flat[i] = value
    logliks, predictions, right = [], [], {"acc": 0, "acc_norm": 0, "acc_bytes": 0}
    offset = 0
    for question in questions:
        lls = tuple(flat[offset : offset + len(question.choices)])
        offset += len(question.choices)
        chars = [len(c) or 1 for c in question.choices]  # an empty choice: its loglik as is, not a division by 0
        nbytes = [len(c.encode("utf-8")) or 1 for c in question.choices]
        picks = {
            "acc": _first_argmax(list(lls)),
            "acc_norm": _first_argmax([ll / n for ll, n in zip(lls, chars, strict=True)]),
            "acc_bytes": _first_argmax([ll / n for ll, n in zip(lls, nbytes, strict=True)]),
        }
        for name, pick in picks.items():
            right[name] += pick == question.label
        logliks.append(lls)
        predictions.append(picks["acc"])
    n = len(questions)
    return MultipleChoiceScore(right["acc"] / n, right["acc_norm"] / n, right["acc_bytes"] / n, n, logliks, predictions)
