"""What ``distillab-summarize`` writes: the summary table as CSV, Markdown and LaTeX, and the
plots of accuracy against parameters, latency and a grouping key."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from distillab.run.summary import STATS, stats
from distillab.run.summary_jobs import Job

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
