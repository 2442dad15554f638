"""Cost of token-level KD from a top-k teacher cache, relative to the student's own step.

Times one training step (forward, loss, backward) of the lm_agnews student (GPT-2 shape,
2 layers, width 128, vocabulary 8,192) on a batch of 32 x 128 tokens: next-token CE alone
(the student trained alone), and CE + forward KL against the teacher's top-k (k = 32), in
one pass over the vocabulary (loss=token_kd) or as two terms, and against dense logits. Prints each step's median time and its ratio to CE alone.

    python benchmarks/lm_kd_step.py [--threads 2] [--k 32] [--kind forward_kl]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distillab.losses import CompositeLoss, CrossEntropy, TokenDivergence, topk_of
from distillab.models.causal_lm import build_causal_lm
from distillab.models.output import ModelOutput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--kind", default="forward_kl")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab, batch, length = 8192, 32, 128
    student = build_causal_lm(vocab, length, hidden_size=128, num_layers=2, num_heads=2)
    ids = torch.randint(0, vocab, (batch, length + 1))
    data = {
        "inputs": {"input_ids": ids[:, :-1], "attention_mask": torch.ones(batch, length, dtype=torch.long)},
        "labels": ids[:, 1:],
    }
    teacher_logits = torch.randn(batch, length, vocab) * 3
    ce_only = CompositeLoss({"ce": CrossEntropy()}, {"ce": 1.0})
    kd = CompositeLoss({"ce": CrossEntropy(), "kd": TokenDivergence(args.kind)}, {"ce": 0.5, "kd": 0.5})
    fused = CompositeLoss({"kd": TokenDivergence(args.kind, ce_weight=1.0)}, {"kd": 0.5})  # loss=token_kd
    top = topk_of(teacher_logits, args.k)
    cases = {
        "CE alone": (ce_only, None),
        f"{args.kind} + CE in one pass, top-{args.k}": (fused, top),
        f"{args.kind} and CE apart, top-{args.k}": (kd, top),
        f"{args.kind} and CE apart, dense": (kd, ModelOutput(teacher_logits)),
    }
    base = None
    for name, (loss, teacher) in cases.items():
        times = []
        for _ in range(args.repeats + 2):
            t0 = time.perf_counter()
            result = loss(student(data["inputs"]), teacher, data)
            result.total.backward()
            times.append(time.perf_counter() - t0)
        median = statistics.median(times[2:])
        base = base or median
        print(f"{name:40s} {median * 1000:8.1f} ms/step   {median / base:5.2f}x")


if __name__ == "__main__":
    main()
