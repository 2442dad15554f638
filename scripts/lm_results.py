"""docs/results/lm.md from the folders scripts/lm_results.sh fills (outputs/lm by default):
summarize.py's tables, and the figures the language-model acceptance checks read, computed
from the jobs' metrics.json (perplexity per seed, top-k against dense, cache size, epoch cost).

    python scripts/lm_results.py outputs/lm > docs/results/lm.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def jobs(folder: Path) -> list[dict[str, Any]]:
    """The runs' metrics under ``folder`` (a teacher store's metrics.json has no "stage")."""
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("**/metrics.json"))]
    return [m for m in found if "stage" in m]


def table(folder: Path) -> str:
    summary = folder / "summary" / "summary.md"
    return summary.read_text().strip() if summary.is_file() else "(not run: no summary in " + str(folder) + ")"


def mean_epoch(metrics: dict[str, Any], role: str) -> float:
    return statistics.mean(metrics["throughput"][role]["epoch_seconds"])


def config_value(path: Path, key: str) -> str:
    import yaml
    node: Any = yaml.safe_load(path.read_text())
    for part in key.split("."):
        node = node[part]
    return str(node)


def main(root: Path) -> str:
    seeds = jobs(root / "seeds")
    lines = ["# Language-model distillation: results", "",
             "GPT-2 shaped teacher (4 layers, width 256, 5.3M parameters) trained once on the text of AG News and "
             "SST-2 (`data=lm_corpus`: 75,087 training documents, 1.62M tokens, byte-level BPE of 8,192), "
             "students of 2 layers, width 128 (1.46M parameters) on a budget of 409,600 tokens × 4 epochs, "
             "tested on held-out documents (33,920 tokens). 2 CPU cores. Produced by "
             "`bash scripts/lm_results.sh` (the runs, then summarize.py on each sweep and this page); "
             "ppl is test perplexity (lower is better), agreement the share of test positions where the "
             "model's most likely next token is the teacher's.", ""]
    lines += ["## Distilled vs trained alone, three seeds", "",
              "`distillab -m experiment=lm_agnews seed=1,2,3` (L = forward KL at T = 1 + CE, the teacher from its "
              "top-32 cache; the student alone: CE on the same tokens):", "", table(root / "seeds"), ""]
    rows = [(m["seed"], m["student"]["test"]["ppl"], m["baseline"]["test"]["ppl"]) for m in seeds
            if "student" in m and "baseline" in m]
    lines += ["| seed | distilled ppl | alone ppl | distilled lower |", "|---|---|---|---|"]
    lines += [f"| {s} | {d:.2f} | {a:.2f} | {'yes' if d < a else 'no'} |" for s, d, a in sorted(rows)]
    ratios = [mean_epoch(m, "student") / mean_epoch(m, "baseline") for m in seeds
              if {"student", "baseline"} <= set(m.get("throughput", {}))] or [float("nan")]
    lines += ["", f"A cached KD epoch costs {statistics.mean(ratios):.2f}× a student-alone epoch (mean over the "
              f"seeds: {', '.join(f'{r:.2f}' for r in ratios)}; the training steps' time, `metrics.json` "
              "`throughput`).", ""]
    lines += ["## Divergence × top-k", "",
              "`distillab -m experiment=lm_agnews baseline=false seed=1 loss.terms.kd.kind=forward_kl,reverse_kl,jsd "
              "teacher.cache_topk=8,32`:", "", table(root / "loss_k"), ""]
    dense_jobs = {config_value(p.parent / "config.yaml", "teacher.cache_topk"): json.loads(p.read_text())
                  for p in sorted((root / "dense").glob("*/metrics.json")) if (p.parent / "config.yaml").is_file()}
    lines += ["## Top-k cache against dense teacher logits", "",
              "`distillab -m experiment=lm_agnews baseline=false seed=1 teacher.cache_topk=32,null` (null: dense "
              "logits; they would take 12.8 GB for the training split, over `teacher.cache_budget_mb`, so the "
              "teacher runs live on every batch):", "", table(root / "dense"), ""]
    if {"32", "None"} <= set(dense_jobs):
        top, dense = dense_jobs["32"], dense_jobs["None"]
        cache = top["teacher_cache"]["splits"]["train"]
        size_ratio = cache["dense_logits_bytes"] / cache["bytes"] if cache.get("dense_logits_bytes") else None
        ppl_gap = top["student"]["test"]["ppl"] / dense["student"]["test"]["ppl"] - 1
        lines += [f"- k = 32: student ppl {top['student']['test']['ppl']:.2f} against {dense['student']['test']['ppl']:.2f} "
                  f"with dense logits ({100 * ppl_gap:+.1f}%).",
                  f"- Cache of the training split: {cache['bytes'] / 2**20:.1f} MB"
                  + (f" against {cache['dense_logits_bytes'] / 2**20:,.0f} MB of float32 logits ({size_ratio:.0f}× "
                     f"smaller; {size_ratio / 2:.0f}× against float16 logits)" if size_ratio else "")
                  + (f", built in {cache['build_seconds']:.0f} s." if cache.get("build_seconds") else ", reused."),
                  f"- Epoch (training steps): {mean_epoch(top, 'student'):.1f} s from the top-32 cache, "
                  f"{mean_epoch(dense, 'student'):.1f} s with the live dense teacher.", ""]
    lines += ["## On-policy distillation (GKD)", "",
              "`distillab -m experiment=lm_agnews_gkd seed=1 baseline=false`: generalised JSD (β = 0.5) + CE on "
              "the corpus's batches, half the batches the student's own continuations (96 tokens after a 32-token "
              "prompt, sampled at T = 1) scored by the live teacher. The student alone with this seed is in the "
              "three-seed table (seed 1).", "", table(root / "gkd"), ""]
    times = root / "time.txt"
    if times.is_file():
        lines += ["## Wall time", "", "```", times.read_text().strip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/lm")))
