"""Compare distillation methods on digits: same teacher, same student, same budget, 3 seeds.

Every run goes through the real CLI; teachers come from one store, so each seed trains
its teacher(s) once. Writes docs/results/methods_digits.md (mean ± std over seeds of test
accuracy, retention of the teacher's accuracy, and student seconds per epoch).

    python benchmarks/methods.py                      # all methods, seeds 0 1 2 (~25 min, 2 cores)
    python benchmarks/methods.py --seeds 0 --methods kd dkd
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]

# (name, run, overrides, which entry of metrics.json is the method's student). The KD run
# also trains the student alone (its baseline), so both come from one run.
METHODS: list[tuple[str, str, list[str], str]] = [
    ("student alone", "kd", ["experiment=digits_kd"], "baseline"),
    ("KD (Hinton)", "kd", ["experiment=digits_kd"], "student"),
    ("logit MSE", "logit_mse", ["experiment=digits_kd", "loss=logit_mse", "baseline=false"], "student"),
    ("FitNet", "fitnet", ["experiment=digits_kd", "loss=fitnet", "baseline=false"], "student"),
    ("TinyBERT", "tinybert", ["experiment=digits_kd", "loss=tinybert", "baseline=false"], "student"),
    ("MiniLM", "minilm", ["experiment=digits_kd", "loss=minilm", "baseline=false"], "student"),
    ("DKD", "dkd", ["experiment=digits_kd", "loss=dkd", "baseline=false"], "student"),
    (
        "multi-teacher (2, confidence)",
        "multi_teacher",
        ["experiment=digits_multi_teacher", "baseline=false"],
        "student",
    ),
    ("mutual (DML)", "mutual", ["experiment=digits_mutual", "baseline=false"], "student"),
]
RUNS = sorted({key for _, key, _, _ in METHODS})


def run(key: str, overrides: list[str], role: str, seed: int, out: Path, teachers: Path, extra: list[str]) -> dict:
    run_dir = out / key / f"seed{seed}"
    if not (run_dir / "metrics.json").exists():
        cmd = [
            sys.executable,
            "-m",
            "distillab.cli.train",
            *overrides,
            f"seed={seed}",
            f"hydra.run.dir={run_dir}",
            f"paths.teachers_dir={teachers}",
            "logger=none",
            "callbacks.progress_bar.refresh_rate=100000",
            *extra,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise SystemExit(f"{key} seed {seed} failed:\n{proc.stderr[-3000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    epochs = OmegaConf.load(run_dir / "config.yaml").trainer.max_epochs
    return {
        "acc": m[role]["test"]["acc"],
        "retention": m[role]["test"]["acc"] / reference(m),
        "sec_per_epoch": m["seconds"][role if role == "baseline" else "student"] / epochs,
        "params": m[role]["params"],
        "teacher_acc": reference(m),
        "run": str(run_dir),
        "run_seconds": m["seconds"]["total"],
    }


def reference(m: dict) -> float:
    return m.get("reference_acc") or m["teacher"]["test"]["acc"]


def fmt(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods", nargs="+", default=RUNS, choices=RUNS, help="runs to make (kd includes the student alone)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "methods")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "results" / "methods_digits.md")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    methods = [m for m in METHODS if m[1] in args.methods]
    teachers = args.out / "teachers"
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name, key, overrides, role in methods:
            t0 = time.time()
            results.setdefault(name, []).append(run(key, overrides, role, seed, args.out, teachers, args.overrides))
            print(f"seed {seed} {name:32s} acc {results[name][-1]['acc']:.4f} ({time.time() - t0:.0f} s)", flush=True)

    lines = [
        "# Distillation methods on digits",
        "",
        f"Same ViT teacher (534k parameters), same ViT student (18k), same budget (the student's epochs, "
        f"optimizer and schedule of `experiment=digits_kd`), seeds {', '.join(map(str, args.seeds))}; "
        "test split of 270 images (one image = 0.0037). Mean ± standard deviation over seeds.",
        "",
        "| method | student test acc | retention | student s/epoch (fastest seed) |",
        "|---|---|---|---|",
    ]
    if "KD (Hinton)" in results:
        teacher = [x["teacher_acc"] for x in results["KD (Hinton)"]]
        lines.append(f"| *the teacher* | {fmt(teacher)} | 1 | – |")
    for name, *_ in methods:
        r = results[name]
        lines.append(
            f"| {name} | {fmt([x['acc'] for x in r])} | {fmt([x['retention'] for x in r], 3)} | "
            f"{min(x['sec_per_epoch'] for x in r):.2f} |"
        )
    lines += [
        "",
        "Retention is the student's test accuracy over the teacher's (the best teacher's for "
        "multi-teacher; for mutual learning, the jointly trained teacher's). Seconds per epoch "
        "are the student stage's wall time (training, validation, checkpoints, test) over its "
        "epochs, the fastest of the seeds (the least disturbed by other work on the machine); "
        "mutual learning trains the teacher in the same epochs. Runs already in the output "
        "folder are reused, so re-running the command only adds what is missing.",
        "",
        f"Made by `python benchmarks/methods.py --seeds {' '.join(map(str, args.seeds))}"
        f"{' --methods ' + ' '.join(args.methods) if set(args.methods) != set(RUNS) else ''}"
        f"{' ' + ' '.join(args.overrides) if args.overrides else ''}` "
        f"({sum({x['run']: x['run_seconds'] for r in results.values() for x in r}.values()) / 60:.0f} min of runs) on {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, {platform.python_version()}.",
        "",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
