"""The tables of docs/results/llm.md from the run folders of experiment=smollm2_minitron (one per
cut), read from each run's metrics.json: teacher / cut (unhealed) / healed by CE / healed by KD,
the margins the acceptance checks read, and the greedy answers side by side.

    python scripts/llm_results.py outputs/llm/mild outputs/llm/strong
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from distillab.run.metrics import RunMetrics
from distillab.run.report import answers_table

ROWS = (("teacher", "teacher"), ("cut", "cut, unhealed"), ("baseline", "healed by CE"), ("student", "healed by KD"))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(run: Path) -> list[str]:
    m = RunMetrics.read(run / "metrics.json")
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    lm, cut = m.language_model or {}, m.entry("cut")["cut"]
    removed = cut["layer_params_removed"]
    out = [
        f"### {run.name}: {cut['shape_after']['num_layers']} layers, FFN {cut['shape_after']['intermediate_size']}, "
        f"{removed:.1%} of the layers' parameters removed (seed {m.seed})",
        "",
        "| model | params | MB | corpus ppl | response ppl | PIQA acc | PIQA acc_norm | agreement | tokens/s @1 | "
        "tokens/s @8 | train tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for role, name in ROWS:
        e, s = m.entry(role), lm.get(role, {})
        piqa, speed = s.get("piqa") or {}, s.get("tokens_per_s") or {}
        out.append(
            f"| {name} | {e['params'] / 1e6:.1f}M | {s.get('bytes', 0) / 2**20:.0f} | {e['test']['ppl']:.2f} | "
            f"{fmt(s.get('response_ppl'), '.2f')} | {fmt(piqa.get('acc'), '.3f')} | {fmt(piqa.get('acc_norm'), '.3f')} | "
            f"{fmt(s.get('agreement'), '.3f')} | {fmt(speed.get('1'), ',.0f')} | {fmt(speed.get('8'), ',.0f')} | "
            f"{fmt(s.get('train_tokens_per_s'), ',.0f')} |"
        )
    acc = {role: (lm.get(role, {}).get("piqa") or {}).get("acc") for role, _ in ROWS}
    ppl = {role: lm.get(role, {}).get("response_ppl") for role, _ in ROWS}
    n = (lm["teacher"].get("piqa") or {}).get("n")
    lost = acc["teacher"] - acc["cut"]
    recovered = (acc["student"] - acc["cut"]) / lost if lost > 0 else float("nan")
    out += [
        "",
        f"- KD against CE: response ppl {ppl['student']:.2f} vs {ppl['baseline']:.2f} "
        f"({ppl['baseline'] - ppl['student']:+.2f}); PIQA acc {acc['student']:.3f} vs {acc['baseline']:.3f} "
        f"({acc['student'] - acc['baseline']:+.3f}) on {n} questions.",
        f"- PIQA acc lost by the cut: {lost:+.3f}; recovered by KD: {recovered:.0%} of it "
        f"(by CE: {(acc['baseline'] - acc['cut']) / lost if lost > 0 else float('nan'):.0%}).",
        f"- Token budget: {cfg['data']['max_train_tokens']:,} training tokens, one epoch. Wall time "
        f"{m.seconds['total'] / 60:.1f} min: KD student {m.seconds.get('student', 0) / 60:.1f} min (with the "
        f"teacher cache's build, or its reuse), CE student {m.seconds.get('baseline', 0) / 60:.1f} min, scoring "
        f"{m.seconds.get('language_model_report', 0) / 60:.1f} min.",
    ]
    teacher = m.teacher or {}
    if "precision" in teacher:
        p = teacher["precision"]
        out.append(
            f"- Teacher in {p['dtype']}: top-1 agreement with fp32 {p['top1_agreement_with_fp32']:.4f} on "
            f"{p['positions']:,} validation positions; forward {p['fp32_items_per_s']:,.0f} tokens/s in fp32, "
            f"{p[p['dtype'] + '_items_per_s']:,.0f} in {p['dtype']}."
        )
    answers = answers_table({name: lm[role] for role, name in ROWS if role in lm})
    return [*out, "", "Greedy answers (chat template, 32 new tokens):", "", answers, ""] if answers else out


def main() -> None:
    for folder in sys.argv[1:]:
        print("\n".join(table(Path(folder))))


if __name__ == "__main__":
    main()
