"""docs/results/lm.md from the folders scripts/lm_results.sh fills (outputs/lm by default):
distillab-summarize's tables, and the figures the language-model acceptance checks read, computed
from the jobs' metrics.json (perplexity per seed, sparse targets against dense logits, cache
size, epoch cost, wall time).

    python scripts/lm_results.py outputs/lm > docs/results/lm.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from distillab.run.metrics import RunMetrics


def cache_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """A job's cache settings: ``cache.topk``/``cache.samples``, or, in a config saved before the
    keys had their own group, ``teacher.cache_topk``/``teacher.cache_samples``."""
    if "cache" in cfg:
        return {"topk": cfg["cache"]["topk"], "samples": cfg["cache"].get("samples") or 0}
    return {"topk": cfg["teacher"]["cache_topk"], "samples": cfg["teacher"].get("cache_samples") or 0}


def jobs(folder: Path) -> list[tuple[dict[str, Any], RunMetrics]]:
    """(resolved config, metrics) of each run under ``folder`` (a teacher store's metrics.json
    has no "stage"; a job without config.yaml beside its metrics is skipped)."""
    found = []
    for path in sorted(folder.glob("**/metrics.json")):
        data = json.loads(path.read_text())
        if "stage" in data and (path.parent / "config.yaml").is_file():
            found.append((yaml.safe_load((path.parent / "config.yaml").read_text()), RunMetrics.from_json(data)))
    return found


def table(folder: Path) -> str:
    summary = folder / "summary" / "summary.md"
    return summary.read_text().strip() if summary.is_file() else "(not run: no summary in " + str(folder) + ")"


def mean_epoch(metrics: RunMetrics, role: str) -> float:
    return statistics.mean(metrics.throughput[role]["epoch_seconds"])


def ppl(metrics: RunMetrics, role: str = "student") -> float:
    return metrics.entry(role)["test"]["ppl"]


def agreement(metrics: RunMetrics, role: str = "student") -> float:
    """Top-1 agreement with the teacher on the test split (the LM report's, which has every model's)."""
    return metrics.language_model[role]["agreement"]


def target_name(cfg: dict[str, Any]) -> str:
    k, samples = cache_of(cfg)["topk"], cache_of(cfg)["samples"]
    if k is None:
        return "dense logits (live teacher)"
    return f"top {k - samples} + {samples} sampled" if samples else f"top {k} + the rest as one bucket"


def wall_times(root: Path) -> dict[str, str]:
    times = root / "time.txt"
    lines = times.read_text().splitlines() if times.is_file() else []
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines if ":" in line}


def main(root: Path) -> str:
    seeds = [(c, m) for c, m in jobs(root / "seeds") if m.student is not None and m.baseline is not None]
    dense_by_seed = {m.seed: m for c, m in jobs(root / "dense") if cache_of(c)["topk"] is None}
    dense = [dense_by_seed[1]] if 1 in dense_by_seed else []
    seed1 = [m for c, m in seeds if m.seed == 1]
    # The ablation of what the slots hold (run without clipping): forward KL at 32 slots, and dense.
    targets = [
        (c, m)
        for c, m in jobs(root / "targets")
        if cache_of(c)["topk"] == 32 and c["loss"]["terms"]["kd"]["kind"] == "forward_kl"
    ]
    targets_dense = [m for c, m in jobs(root / "targets_dense") if cache_of(c)["topk"] is None]
    default = cache_of(seeds[0][0]) if seeds else {"topk": 32, "samples": 8}
    lines = [
        "# Language-model distillation: results",
        "",
        "GPT-2 shaped teacher (4 layers, width 256, 5.3M parameters) trained once on the text of AG News and "
        "SST-2 (`data=lm_corpus`: 75,087 training documents, 1.62M tokens, byte-level BPE of 8,192), "
        "students of 2 layers, width 128 (1.46M parameters) on a budget of 409,600 tokens × 4 epochs, "
        "tested on held-out documents (33,920 tokens). 2 CPU cores. Produced by "
        "`bash scripts/lm_results.sh` (the runs, then distillab-summarize on each sweep and this page); "
        "ppl is test perplexity (lower is better), agreement the share of test positions where the "
        "model's most likely next token is the teacher's. `experiment=lm_agnews` distils with forward KL "
        f"at T = 1 + CE from a {default['topk']}-slot cache: the teacher's top "
        f"{default['topk'] - (default['samples'])} tokens exact and "
        f"{default['samples']} slots of tokens drawn from the rest of its distribution "
        "(`cache.samples`), a target equal to the teacher's distribution in expectation.",
        "",
    ]

    checks = []
    if seeds:
        lower = sum(ppl(m) < ppl(m, "baseline") for _, m in seeds)
        checks.append(
            f"- **Distilled below alone**: on {lower} of {len(seeds)} seeds ("
            + ", ".join(
                f"seed {m.seed}: {ppl(m):.1f} vs {ppl(m, 'baseline'):.1f}"
                for _, m in sorted(seeds, key=lambda cm: cm[1].seed)
            )
            + ")."
        )
    pairs = [
        (m.seed, ppl(m), ppl(dense_by_seed[m.seed]))
        for _, m in sorted(seeds, key=lambda cm: cm[1].seed)
        if m.seed in dense_by_seed
    ]
    if pairs:
        checks.append(
            "- **32 slots against dense teacher logits**: "
            + ", ".join(f"seed {s}: {a:.1f} against {d:.1f} ({100 * (a / d - 1):+.1f}%)" for s, a, d in pairs)
            + " (`distillab -m experiment=lm_agnews baseline=false seed=1 cache.topk=null`)."
        )
    # The default cache's train split, where a run built it (build time) or else reused it.
    caches = [
        m.teacher_cache["splits"]["train"]
        for c, m in jobs(root / "first") + seeds + targets
        if cache_of(c)["topk"] == default["topk"]
        and cache_of(c)["samples"] == default["samples"]
        and "train" in (m.teacher_cache or {}).get("splits", {})
    ]
    caches = [c for c in caches if c.get("dense_logits_bytes")]  # (entries from before that figure was kept)
    if caches:
        cache = next((c for c in caches if c.get("build_seconds")), caches[0])
        ratio = cache["dense_logits_bytes"] / cache["bytes"]
        checks.append(
            f"- **Cache size**: the training split's 32-slot cache takes {cache['bytes'] / 2**20:.1f} MB "
            f"against {cache['dense_logits_bytes'] / 2**20:,.0f} MB of float32 logits ({ratio:.0f}× "
            f"smaller; {ratio / 2:.0f}× against float16)"
            + (f", built in {cache['build_seconds']:.0f} s." if cache.get("build_seconds") else ".")
        )
    if seeds:
        ratios = [mean_epoch(m, "student") / mean_epoch(m, "baseline") for _, m in seeds]
        checks.append(
            f"- **Epoch cost**: a cached KD epoch takes {statistics.mean(ratios):.2f}× a student-alone "
            f"epoch (per seed {', '.join(f'{r:.2f}' for r in ratios)}; the training steps' time, "
            "`metrics.json` `throughput`)."
        )
    times = wall_times(root)
    if "first" in times:
        checks.append(
            f"- **Full run** `distillab experiment=lm_agnews` from an empty teacher store (teacher, cache, "
            f"student, student alone): {times['first']}."
        )
    first = jobs(root / "first")
    if "gkd" in times:
        # The GKD sweep reads the teacher from the store; from an empty store it would also train
        # it, as `first` did: that time is added.
        teacher_s = first[0][1].seconds["teacher"] if first else None
        gkd_s = int(times["gkd"].split()[0])
        checks.append(
            f"- **Full run** `distillab experiment=lm_agnews_gkd` (GKD student and the student alone): "
            f"{times['gkd']} with the teacher from the store"
            + (
                f"; with the teacher's training as measured in the first run ({teacher_s:.0f} s), "
                f"{(gkd_s + teacher_s) / 60:.1f} min."
                if teacher_s
                else "."
            )
        )
    lines += ["## In short", "", *checks, ""]

    lines += [
        "## Distilled vs trained alone, three seeds",
        "",
        "`distillab -m experiment=lm_agnews seed=1,2,3` (the student alone: CE on the same tokens):",
        "",
        table(root / "seeds"),
        "",
        "| seed | distilled ppl | alone ppl | distilled lower |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {m.seed} | {ppl(m):.2f} | {ppl(m, 'baseline'):.2f} | {'yes' if ppl(m) < ppl(m, 'baseline') else 'no'} |"
        for _, m in sorted(seeds, key=lambda cm: cm[1].seed)
    ]
    lines += [""]

    lines += [
        "## Dense teacher logits",
        "",
        "`distillab -m experiment=lm_agnews baseline=false seed=1 cache.topk=null` (dense logits: "
        "12.8 GB for the training split, over `cache.budget_mb`, so the teacher runs live on every "
        "batch):",
        "",
        table(root / "dense"),
    ]
    if seed1 and dense:
        lines += [
            "",
            f"An epoch's training steps take {mean_epoch(dense[0], 'student'):.0f} s with the live dense "
            f"teacher and {mean_epoch(seed1[0], 'student'):.0f} s from the cache (seed 1).",
        ]
    lines += [
        "",
        "## What the 32 slots hold (ablation, without clipping)",
        "",
        "Seed 1, forward KL + CE, same student and budget, run before the students' gradient clipping was "
        "added (`optimizer.max_grad_norm=null`; the rows compare with each other, not with the tables "
        "above): `distillab -m experiment=lm_agnews baseline=false seed=1 optimizer.max_grad_norm=null "
        "cache.samples=0,8,16,24,31`, and the same with `cache.topk=null`:",
        "",
        "| what the teacher gives | test ppl | vs dense | agreement |",
        "|---|---|---|---|",
    ]
    reference = ppl(targets_dense[0]) if targets_dense else None
    rows = sorted(targets, key=lambda cm: cache_of(cm[0])["samples"]) + [
        ({"cache": {"topk": None, "samples": 0}}, m) for m in targets_dense[:1]
    ]
    for cfg, m in rows:
        versus = f"{100 * (ppl(m) / reference - 1):+.1f}%" if reference else "-"
        lines.append(f"| {target_name(cfg)} | {ppl(m):.2f} | {versus} | {agreement(m):.3f} |")
    lines += [
        "",
        "The top k with the rest as one bucket tells the student how much mass lies outside the k tokens "
        "but not where: the student's own shape of that tail is kept, and at a teacher perplexity near 360 "
        "much of the teacher's mass lies there. Tokens drawn from the rest of the teacher's distribution, "
        "weighted m·c/s (m the rest's mass, c the draws of a token out of s), place that mass where the "
        "teacher puts it on average: the forward KL's gradient q − p̂ equals the dense one in expectation "
        "(Anshumann et al. 2025, sparse logit sampling). Only forward-KL terms read that target without "
        "bias; the other divergences keep the bucket form (`cache.samples=0`).",
        "",
    ]

    lines += [
        "## Divergence × top-k (ablation, without clipping)",
        "",
        "`distillab -m experiment=lm_agnews baseline=false seed=1 optimizer.max_grad_norm=null "
        "loss.terms.kd.kind=forward_kl,reverse_kl,jsd cache.topk=8,32 cache.samples=0` (the "
        "top k and the rest as one bucket, which every divergence reads):",
        "",
        table(root / "loss_k"),
        "",
    ]
    lines += [
        "## On-policy distillation (GKD)",
        "",
        "`distillab -m experiment=lm_agnews_gkd seed=1`: generalised JSD (β = 0.5) + CE on the corpus's "
        "batches (top 32 + the rest as one bucket), half the batches the student's own continuations (96 "
        "tokens after a 32-token prompt, sampled at T = 1) scored by the live teacher; beside it the student "
        "alone:",
        "",
        table(root / "gkd"),
        "",
    ]
    if times:
        lines += ["## Wall time", "", "```", *(f"{k}: {v}" for k, v in times.items()), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/lm")))
