"""A Hydra multirun folder of distillab jobs -> one table (CSV, Markdown, LaTeX) and two plots.

    python scripts/summarize.py outputs/multiruns/<date>/<time> [--group-by KEY ...] [--out DIR]
                                [--x KEY]

One row per (group, model): mean ± sample std over the group's jobs (its seeds) of test
accuracy, error, error count, F1, agreement and latency, and on the student (and pruned) row
the share of the teacher-baseline gap that distillation closes and its accuracy gain over the
student trained alone (points). ``--x KEY`` (a grouping key, e.g. data.labelled_fraction) also
draws each model's accuracy against that key: acc_vs_<key>.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

MISSING = object()
STUDENTS = ("student", "pruned")
# (statistic, decimals in the tables); error is in percent, test_errors a count
STATS = (
    ("ppl", 2),
    ("acc", 4),
    ("error", 2),
    ("test_errors", 1),
    ("f1", 4),
    ("agreement", 4),
    ("tokens_per_s", 0),
    ("latency_ms_b1", 2),
    ("latency_ms_b64", 2),
)
TEX_ESCAPES = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
)
TITLES = {
    "ppl": "test ppl",
    "tokens_per_s": "train tokens/s",
    "error": "error (%)",
    "test_errors": "test errors",
    "latency_ms_b1": "ms (b=1)",
    "latency_ms_b64": "ms (b=64)",
    "gap_closed": "gap closed",
    "vs_alone": "vs alone (pt)",
    "ppl_vs_alone": "ppl vs alone",
}


class SummaryError(Exception):
    """A problem with the input, reported as one line and exit code 2."""


class Job(NamedTuple):  # not a dataclass: that needs sys.modules[__name__], which a bare importlib load lacks
    path: Path
    overrides: dict[str, str]  # key -> value as typed on the command line
    config: dict[str, Any]
    metrics: dict[str, Any] | None  # None: the job failed (no metrics.json)


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``['+a.b=1', 'seed=2']`` -> ``{'a.b': '1', 'seed': '2'}`` (Hydra's +, ++, ~ prefixes dropped)."""
    pairs = (str(line).lstrip("+~").partition("=") for line in lines)
    return {key: value for key, _, value in pairs}


def read_metrics(path: Path) -> dict[str, Any] | None:
    """A run's metrics.json, or None when there is none or it is cut short (a killed job)."""
    try:
        return json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def read_job(path: Path) -> Job:
    read = lambda file, default: (yaml.safe_load(file.read_text()) or default) if file.is_file() else default
    # A job that stopped before saving its resolved config still has Hydra's (unresolved) copy.
    config = read(path / "config.yaml", None) or read(path / ".hydra" / "config.yaml", {})
    return Job(path, parse_overrides(read(path / ".hydra" / "overrides.yaml", [])), config, read_metrics(path))


def find_jobs(root: Path) -> list[Job]:
    """Every job folder under ``root`` (itself included), in numeric order of their paths."""
    found = []
    for folder, subdirs, _ in os.walk(root):
        path = Path(folder)
        # A run's metrics.json has a "stage"; the teacher store's entries (metrics.json too) do not.
        if (path / ".hydra" / "overrides.yaml").is_file() or "stage" in (read_metrics(path) or {}):
            found.append(path)
            subdirs.clear()  # checkpoints/, tensorboard/ hold no jobs
        else:
            subdirs[:] = [d for d in subdirs if d != ".hydra"]
    order = lambda p: [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.relative_to(root).parts]  # 2 < 10
    return [read_job(p) for p in sorted(found, key=order)]


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def group_value(job: Job, key: str) -> Any:
    """The job's value of ``key``: the resolved config's when it is a plain value, else what the
    command line said (a config group such as ``loss=dkd`` or ``experiment=...``)."""
    value = lookup(job.config, key)
    if value is not MISSING and not isinstance(value, (dict, list)):
        return value
    if key in job.overrides:
        # Typed as the config would be ("2" -> 2), so that a failed job without a config joins its group.
        try:
            typed = yaml.safe_load(job.overrides[key])
        except yaml.YAMLError:
            typed = None
        return typed if isinstance(typed, (int, float, str, bool)) else job.overrides[key]
    return None if value is MISSING else json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_group_keys(overrides: list[dict[str, str]]) -> list[str]:
    """Keys given more than one value across the jobs' command lines, seed excepted (seeds are
    what mean ± std runs over), in the order they first appear."""
    values: dict[str, set[str]] = {}
    for job in overrides:
        for key, value in job.items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 and key != "seed"]


def group_jobs(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """Jobs by their values of ``keys``, groups in ascending order of those values (numbers
    before text, so that mixed types still sort)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(group_value(job, k) for k in keys), []).append(job)
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return dict(sorted(groups.items(), key=lambda kv: [(0, v, "") if number(v) else (1, 0, str(v)) for v in kv[0]]))


def check_keys(jobs: list[Job], keys: list[str]) -> None:
    for key in keys:
        if not any(lookup(j.config, key) is not MISSING or key in j.overrides for j in jobs):
            top = sorted({k for j in jobs for k in j.config})
            raise SummaryError(
                f"--group-by {key}: no job's config.yaml has this key (top-level keys: {', '.join(top[:20]) or 'none'})"
            )


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for fewer than two values, both for none."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None


def gap_closed(err_teacher: float | None, err_student: float | None, err_baseline: float | None) -> float | None:
    """(err_baseline - err_student) / (err_baseline - err_teacher): the share of the gap between
    the student trained alone and its teacher that distillation closes (Hinton et al. 2015).
    None when a term is missing or the teacher is not better than the baseline (no gap)."""
    if None in (err_teacher, err_student, err_baseline) or err_baseline - err_teacher <= 0:
        return None
    return (err_baseline - err_student) / (err_baseline - err_teacher)


def model_entries(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    teachers = metrics.get("teachers") or ([metrics["teacher"]] if "teacher" in metrics else [])
    entries = [(t.get("role", "teacher"), t) for t in teachers]
    return entries + [(role, metrics[role]) for role in (*STUDENTS, "baseline") if role in metrics]


def observations(metrics: dict[str, Any], role: str, entry: dict[str, Any]) -> dict[str, float]:
    """The figures of one model in one job; error in percent, test_errors a count. A language
    model: held-out perplexity, next-token accuracy, agreement with the teacher, tokens/s."""
    test, compression = entry["test"], metrics.get("compression", {}).get(role, {})
    if "language_model" in metrics:
        lm = metrics["language_model"].get(role, {})
        seen = {
            "ppl": test["ppl"],
            "acc": test["acc"],
            "agreement": lm.get("agreement"),
            "tokens_per_s": lm.get("train_tokens_per_s"),
        }
        return {k: v for k, v in seen.items() if v is not None}
    seen = {"acc": test["acc"], "error": 100 * (1 - test["acc"]), "f1": test.get("f1")}
    n_test = metrics.get("data", {}).get("test")
    if n_test:
        seen["test_errors"] = round((1 - test["acc"]) * n_test)
    if role in STUDENTS:
        seen["agreement"] = test.get("agreement")
    seen.update({k: compression.get(k) for k in ("latency_ms_b1", "latency_ms_b64")})
    seen.update({f"acc {k}": v for k, v in entry.get("robust", {}).items() if k != "clean"})  # under attack
    return {k: v for k, v in seen.items() if v is not None}


def stats(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """STATS, then the accuracy under each attack the jobs measured (``acc pgd@0.1``, ...)."""
    robust = dict.fromkeys(
        k.removesuffix("_mean") for r in rows for k in r if k.startswith("acc ") and k.endswith("_mean")
    )
    return [*STATS, *((k, 4) for k in robust)]


def summarize_group(metrics_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model role over a group's jobs: n, params, and ``<stat>_mean``/``<stat>_std``;
    ``gap_closed`` on student and pruned rows, from the group's mean errors."""
    per_role: dict[str, list[tuple[dict, dict]]] = {}
    for metrics in metrics_list:
        for role, entry in model_entries(metrics):
            per_role.setdefault(role, []).append((metrics, entry))
    late = (*STUDENTS, "baseline")  # teachers first, in their order, then these
    order = [r for r in per_role if r not in late] + [r for r in late if r in per_role]
    rows = []
    for role in order:
        seen = [observations(m, role, e) for m, e in per_role[role]]
        row: dict[str, Any] = {
            "model": role,
            "n": len(seen),
            "params": mean_std([e["params"] for _, e in per_role[role]])[0],
        }
        robust = dict.fromkeys(k for s in seen for k in s if k.startswith("acc "))
        for stat in (*(s for s, _ in STATS), *robust):
            row[f"{stat}_mean"], row[f"{stat}_std"] = mean_std([s[stat] for s in seen if stat in s])
        rows.append(row)
    # The teacher the pipeline measures retention against (the best one, or the per-domain
    # teachers combined); without it, the best teacher's mean accuracy.
    if any(r.get("ppl_mean") is not None for r in rows):  # language models: the gap in log-perplexity (nats per token)
        log_ppl = {r["model"]: math.log(r["ppl_mean"]) for r in rows if r.get("ppl_mean")}
        teacher = min((v for k, v in log_ppl.items() if k not in (*STUDENTS, "baseline")), default=None)
        for row in rows:
            if row["model"] in STUDENTS and row["model"] in log_ppl:
                row["gap_closed"] = gap_closed(teacher, log_ppl[row["model"]], log_ppl.get("baseline"))
                base = next((r["ppl_mean"] for r in rows if r["model"] == "baseline"), None)
                row["ppl_vs_alone"] = None if base is None else row["ppl_mean"] - base  # lower is better
        return rows
    refs = [m["reference_acc"] for m in metrics_list if "reference_acc" in m]
    teacher_accs = [r["acc_mean"] for r in rows if r["model"] not in (*STUDENTS, "baseline")]
    err_t = 100 * (1 - mean_std(refs)[0]) if refs else (100 * (1 - max(teacher_accs)) if teacher_accs else None)
    err_b = next((r["error_mean"] for r in rows if r["model"] == "baseline"), None)
    for row in rows:
        if row["model"] in STUDENTS:
            row["gap_closed"] = gap_closed(err_t, row["error_mean"], err_b)
            # Accuracy points over the student trained alone (mean of each).
            row["vs_alone"] = None if err_b is None else err_b - row["error_mean"]
    return rows


def summary_rows(groups: dict[tuple, list[Job]], keys: list[str]) -> list[dict[str, Any]]:
    """Rows of every group, its key values first and its failed jobs counted; a group whose
    jobs all failed gets one row so that it is not silently missing."""
    rows = []
    for values, jobs in groups.items():
        done = [j.metrics for j in jobs if j.metrics is not None]
        head = dict(zip(keys, values))
        group_rows = summarize_group(done) or [{"model": "-", "n": 0}]
        rows += [{**head, **row, "failed": len(jobs) - len(done)} for row in group_rows]
    return rows


def cell(row: dict[str, Any], column: str, pm: str) -> str:
    """A column of a row as the tables show it, ``mean ± std`` (``pm``) for the statistics."""
    digits = dict(STATS).get(column, 4 if column.startswith("acc ") else None)
    if digits is not None:
        mean, std = row.get(f"{column}_mean"), row.get(f"{column}_std")
        return "-" if mean is None else f"{mean:.{digits}f}" + (f" {pm} {std:.{digits}f}" if std is not None else "")
    value = row.get(column)
    if value is None:
        return "-"
    if column == "params":
        return f"{round(value):,}"
    if column in ("vs_alone", "ppl_vs_alone"):
        return f"{value:+.2f}"
    return f"{100 * value:.1f}%" if column == "gap_closed" else str(value)


def table(rows: list[dict[str, Any]], keys: list[str], pm: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells; statistics that no row has are left out, and ``failed`` when none failed."""
    columns = [
        *keys,
        "model",
        "n",
        "params",
        *(s for s, _ in stats(rows)),
        "gap_closed",
        "vs_alone",
        "ppl_vs_alone",
        "failed",
    ]
    cells = [[cell(r, c, pm) for c in columns] for r in rows]
    keep = [
        i
        for i, c in enumerate(columns)
        if c in (*keys, "model", "n", "params", "gap_closed") or any(line[i] not in ("-", "0") for line in cells)
    ]
    return [TITLES.get(columns[i], columns[i]) for i in keep], [[line[i] for i in keep] for line in cells]


def markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    header, cells = table(rows, keys, "±")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in cells])


def latex(rows: list[dict[str, Any]], keys: list[str]) -> str:
    header, cells = table(rows, keys, "\0")  # a placeholder no cell holds: escaped first, then the macro
    line = lambda items: " & ".join(x.translate(TEX_ESCAPES).replace("\0", r"$\pm$") for x in items) + r" \\"
    align = "l" * (len(keys) + 1) + "r" * (len(header) - len(keys) - 1)
    return "\n".join(
        [
            rf"\begin{{tabular}}{{{align}}}",
            r"\toprule",
            line(header),
            r"\midrule",
            *(line(c) for c in cells),
            r"\bottomrule",
            r"\end{tabular}",
            "",
        ]
    )


def plot(rows: list[dict[str, Any]], keys: list[str], x: str, xlabel: str, path: Path, log_x: bool) -> bool:
    """Test accuracy (± std) against ``x`` (a row column, or ``<stat>_mean``): one marker per row,
    its shape the model, its colour the group, named in the legend (models of equal size and
    accuracy overlap, which labels beside the points would make unreadable). False: no row has x."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get(x) is not None and r.get("acc_mean") is not None]
    if not points:
        return False
    groups = list(dict.fromkeys(tuple(r[k] for k in keys) for r in points))
    fig, ax = plt.subplots(figsize=(9, 5))
    for row in points:
        group = tuple(row[k] for k in keys)
        name = row["model"] + "".join(f", {k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, group))
        ax.errorbar(
            row[x],
            row["acc_mean"],
            yerr=row.get("acc_std") or 0,
            xerr=(row.get(x[:-5] + "_std") or 0) if x.endswith("_mean") else 0,
            fmt={"student": "s", "pruned": "v", "baseline": "^"}.get(row["model"], "o"),
            color=f"C{groups.index(group) % 10}",
            capsize=3,
            label=name,
        )
    ax.set(xscale="log" if log_x else "linear", xlabel=xlabel, ylabel="test accuracy (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_against(rows: list[dict[str, Any]], keys: list[str], x: str, path: Path) -> None:
    """Each model's test accuracy (± std) against the grouping key ``x``, one line per model
    (and per value of the other keys); log x when every value is positive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in keys if k != x]
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for row in rows:
        if row.get("acc_mean") is None:
            continue
        role = {"student": "student, distilled", "baseline": "student alone"}.get(row["model"], row["model"])
        name = role + "".join(f", {k.rsplit('.', 1)[-1]}={row[k]}" for k in others)
        lines.setdefault(name, []).append((float(row[x]), row["acc_mean"], row.get("acc_std") or 0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in lines.items():
        xs, ys, es = zip(*sorted(points))
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
    positive = all(p[0] > 0 for pts in lines.values() for p in pts)
    ax.set(xscale="log" if positive else "linear", xlabel=x, ylabel="test accuracy (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    rows: list[dict[str, Any]], keys: list[str], failed: list[Job], out: Path, x: str | None = None
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = [
        *keys,
        "model",
        "n",
        "failed",
        "params",
        *(f"{stat}_{part}" for stat, _ in stats(rows) for part in ("mean", "std")),
        "gap_closed",
        "vs_alone",
        "ppl_vs_alone",
    ]
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        plain = lambda v: "" if v is None else int(v) if isinstance(v, float) and v.is_integer() else v
        writer.writerows({c: plain(r.get(c)) for c in columns} for r in rows)
    notes = [f"Failed jobs (no metrics.json): {len(failed)}", *(f"- `{j.path}`" for j in failed)] if failed else []
    (out / "summary.md").write_text("\n".join([markdown(rows, keys), "", *notes, ""]))
    (out / "summary.tex").write_text(latex(rows, keys))
    written = [out / name for name in ("summary.csv", "summary.md", "summary.tex")]
    if plot(rows, keys, "params", "parameters", out / "acc_vs_params.png", log_x=True):
        written.append(out / "acc_vs_params.png")
    if plot(rows, keys, "latency_ms_b64_mean", "CPU latency at batch 64 (ms)", out / "acc_vs_latency.png", False):
        written.append(out / "acc_vs_latency.png")
    else:
        print("note: no job has a latency (metrics.json 'compression'); acc_vs_latency.png not written")
    if x is not None:
        path = out / f"acc_vs_{x.rsplit('.', 1)[-1]}.png"
        plot_against(rows, keys, x, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun folder (or a folder of several)")
    parser.add_argument(
        "--group-by",
        nargs="+",
        metavar="KEY",
        help="dotted config keys (default: the keys the sweep varied, seed excepted)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: MULTIRUN_DIR/summary)")
    parser.add_argument("--x", metavar="KEY", help="also plot accuracy against this grouping key")
    args = parser.parse_args(argv)
    try:
        if not args.multirun_dir.is_dir():
            raise SummaryError(f"{args.multirun_dir}: no such folder")
        jobs = find_jobs(args.multirun_dir)
        if not jobs:
            raise SummaryError(f"{args.multirun_dir}: no jobs (no folder with .hydra/overrides.yaml or metrics.json)")
        keys = args.group_by if args.group_by is not None else default_group_keys([j.overrides for j in jobs])
        check_keys(jobs, keys)
        if args.x is not None and args.x not in keys:
            raise SummaryError(
                f"--x {args.x}: not among the grouping keys ({', '.join(keys) or 'none'}); add it with --group-by"
            )
    except SummaryError as err:
        print(f"summarize.py: error: {err}", file=sys.stderr)
        return 2
    failed = [j for j in jobs if j.metrics is None]
    for job in failed:
        print(f"failed job (no metrics.json): {job.path}")
    rows = summary_rows(group_jobs(jobs, keys), keys)
    written = write_outputs(rows, keys, failed, args.out or args.multirun_dir / "summary", args.x)
    print(f"{len(jobs) - len(failed)} jobs summarised, {len(failed)} failed; grouped by: {', '.join(keys) or '-'}\n")
    print(markdown(rows, keys) + "\n")
    print("\n".join(f"wrote {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
