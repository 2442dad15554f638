"""A Hydra multirun folder of distillab jobs -> one table (CSV, Markdown, LaTeX) and two plots.

    distillab-summarize outputs/multiruns/<date>/<time> [--group-by KEY ...] [--out DIR] [--x KEY]

One row per (group, model): mean ± sample std over the group's jobs (its seeds) of test
accuracy, error, error count, F1, agreement and latency, and on the student (and pruned) row
the share of the teacher-baseline gap that distillation closes and its accuracy gain over the
student trained alone (points). ``--x KEY`` (a grouping key, e.g. data.labelled_fraction) also
draws each model's accuracy against that key: acc_vs_<key>.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distillab.run.summary import summary_rows
from distillab.run.summary_jobs import SummaryError, check_keys, default_group_keys, find_jobs, group_jobs
from distillab.run.summary_outputs import markdown, write_outputs

PROG = "distillab-summarize"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        print(f"{PROG}: error: {err}", file=sys.stderr)
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
