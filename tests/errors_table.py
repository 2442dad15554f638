"""The table of wrong inputs in docs/errors.md: read it, run its rows, rewrite its messages.

Each row is run as ``distillab experiment=digits_kd <overrides>`` in this process (Hydra's
compose, then ``distillab.run.pipeline.run``, as the CLI does, with training switched off) and must
stop with the message of its last column. Placeholders stand for what differs between machines:
``<tmp>`` (the row's own empty folder, which also holds the run's outputs and teacher store),
``<data>`` (the shared data sets, ``paths.data_root``) and the files of :func:`make_files`.

    python tests/errors_table.py            # run every row, print those whose message differs
    python tests/errors_table.py --update   # rewrite the message column from the actual errors
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
BASE = ["experiment=digits_kd"]  # every row starts from the demo
HEADER = ["#", "what is wrong", "override(s)", "message"]
# The real data sets beside the checkout (as in conftest.py): rows that read one skip without it.
SHARED_DATA = ROOT.parent / "shared" / "data"
SHARED_SETS = {"mnist": ["mnist"], "sst2": ["sst2"], "agnews": ["agnews"], "sst2_agnews": ["sst2", "agnews"]}
PLACEHOLDER = re.compile(r"<[a-z0-9_]+>")
FILES = {  # placeholder: what make_files writes there
    "<text_file>": "a text file, not a checkpoint",
    "<empty_dir>": "an empty folder (not a teacher store entry)",
    "<ckpt_3_classes>": "weights.pt of the demo's teacher (vit_digits) built for 3 classes; digits has 10",
    "<lightning_ckpt_3_classes>": "the same weights as a Lightning .ckpt (under state_dict, model.*)",
    "<student_weights>": "weights.pt of the demo's student (vit_digits_tiny): another architecture",
    "<truncated_weights>": "the first 100 bytes of a weights.pt",
    "<sst2_jsonl>": "a folder of SST-2-like rows as JSON Lines: train.jsonl, test.jsonl (8 rows each), empty.jsonl",
    "<pretrained_bad_config>": "a pretrained folder whose config.json is not JSON",
    "<pretrained_no_weights>": "a pretrained folder with a tiny BERT's config.json and no weight file",
    "<pretrained_unknown_type>": "a pretrained folder whose config.json names a model_type transformers does not know",
    "<latin1_text_file>": "a text file of two lines in Latin-1, not UTF-8",
    "<bad_conll>": "a folder of CoNLL files: good.conll, no_tab.conll (line 2 has no tab), bad_tag.conll (a tag WNUT-17 lacks)",
}


@dataclass
class Row:
    number: int
    what: str
    overrides: list[str]
    message: str
    line: int  # 0-based line of the row in the file

    @property
    def id(self) -> str:
        return f"{self.number}: {' '.join(self.overrides)}"

    def missing_data(self) -> list[str]:
        """Shared data sets the row reads that this machine lacks."""
        overrides = dict(o.split("=", 1) for o in self.overrides if "=" in o)
        needed = SHARED_SETS.get(overrides.get("data", ""), []) if "data.data_dir" not in overrides else []
        if "<data>" in " ".join(self.overrides) + self.message:
            needed = needed or ["."]
        return [name for name in needed if not (SHARED_DATA / name).is_dir()]


# Markdown: one table, its cells split on unescaped pipes; overrides and messages are code spans.


def split_cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def code_span(text: str) -> str:
    """``text`` as a code span in a table cell (pipes escaped, fence longer than any backtick run)."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def from_code_span(cell: str) -> str:
    found = re.fullmatch(r"(`+)(.*?)\1", cell, flags=re.DOTALL)
    if not found:
        raise ValueError(f"not a code span: {cell!r}")
    text = found[2]
    if len(text) > 1 and text.startswith(" ") and text.endswith(" ") and text.strip():
        text = text[1:-1]
    return text.replace("\\|", "|")


def read_rows(path: Path = DOC) -> list[Row]:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and split_cells(line) == HEADER)
    rows = []
    for i in range(start + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        number, what, overrides, message = split_cells(lines[i])
        rows.append(Row(int(number), what, shlex.split(from_code_span(overrides)), from_code_span(message), i))
    return rows


def write_messages(messages: dict[int, str], path: Path = DOC) -> None:
    """Replace the message cell of the rows at the given lines."""
    lines = path.read_text().splitlines(keepends=True)
    for i, message in messages.items():
        cells = re.split(r"(?<!\\)\|", lines[i].rstrip("\n"))
        cells[-2] = f" {code_span(message)} "
        lines[i] = "|".join(cells) + "\n"
    path.write_text("".join(lines))


# Files the rows name by placeholder.


def make_files(folder: Path) -> dict[str, Path]:
    """Write the files of FILES into ``folder``; return placeholder -> path."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    digits = {"image_size": 8, "num_channels": 1}
    models = ROOT / "src" / "distillab" / "conf" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name.strip("<>") for name in FILES}
    files["<text_file>"] = files["<text_file>"].with_suffix(".txt")
    files["<text_file>"].write_text("not a checkpoint\n")
    files["<empty_dir>"].mkdir()
    torch.manual_seed(0)
    teacher = instantiate(OmegaConf.load(models / "teacher" / "vit_digits.yaml"), **digits, num_labels=3)
    student = instantiate(OmegaConf.load(models / "student" / "vit_digits_tiny.yaml"), **digits, num_labels=10)
    files["<ckpt_3_classes>"] = files["<ckpt_3_classes>"].with_suffix(".pt")
    torch.save(teacher.state_dict(), files["<ckpt_3_classes>"])
    files["<lightning_ckpt_3_classes>"] = files["<lightning_ckpt_3_classes>"].with_suffix(".ckpt")
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in teacher.state_dict().items()}}, files["<lightning_ckpt_3_classes>"]
    )
    files["<student_weights>"] = files["<student_weights>"].with_suffix(".pt")
    torch.save(student.state_dict(), files["<student_weights>"])
    files["<truncated_weights>"] = files["<truncated_weights>"].with_suffix(".pt")
    files["<truncated_weights>"].write_bytes(files["<ckpt_3_classes>"].read_bytes()[:100])
    files["<sst2_jsonl>"].mkdir()
    words = "fine dull great awful good bad neat poor".split()
    rows = "".join(json.dumps({"sentence": f"a {w} film", "label": i % 2}) + "\n" for i, w in enumerate(words))
    for name in ("train", "test"):
        (files["<sst2_jsonl>"] / f"{name}.jsonl").write_text(rows)
    (files["<sst2_jsonl>"] / "empty.jsonl").write_text("")
    bert = {"model_type": "bert", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    configs = {
        "<pretrained_bad_config>": '{"model_type": "bert",\n',
        "<pretrained_no_weights>": json.dumps(bert),
        "<pretrained_unknown_type>": json.dumps({**bert, "model_type": "no_such_model"}),
    }
    for name, text in configs.items():
        files[name].mkdir()
        (files[name] / "config.json").write_text(text)
    files["<latin1_text_file>"] = files["<latin1_text_file>"].with_suffix(".txt")
    files["<latin1_text_file>"].write_bytes("un film très réussi\nune histoire émouvante\n".encode("latin-1"))
    files["<bad_conll>"].mkdir()
    conll = {
        "good.conll": "Empire\tB-location\nState\tI-location\n\nhi\tO\nBob\tB-person\n",
        "no_tab.conll": "hi\tO\nthere O\n",
        "bad_tag.conll": "hi\tO\n\nParis\tB-city\n",
    }
    for name, text in conll.items():
        (files["<bad_conll>"] / name).write_text(text)
    return files


# Running a row.


class ReachedTraining(AssertionError):
    """The run got past its checks to a Lightning fit/validate/test: no config error was raised."""


@contextmanager
def no_training() -> Iterator[None]:
    import lightning as L

    def refuse(*args: object, **kwargs: object) -> None:
        raise ReachedTraining("the run reached Lightning (fit/validate/test) without a config error")

    saved = {name: getattr(L.Trainer, name) for name in ("fit", "validate", "test", "predict")}
    try:
        for name in saved:
            setattr(L.Trainer, name, refuse)
        yield
    finally:
        for name, method in saved.items():
            setattr(L.Trainer, name, method)


def clean(message: str) -> str:
    """One line: Hydra's search-path trailer cut, every run of whitespace one space."""
    return " ".join(message.split("\nConfig search path:")[0].split())


def substitutions(tmp: Path, files: dict[str, Path]) -> dict[str, str]:
    return {**{name: str(path) for name, path in files.items()}, "<tmp>": str(tmp), "<data>": str(SHARED_DATA)}


def error_of(overrides: list[str], tmp: Path, files: dict[str, Path]) -> str:
    """The message a run with ``overrides`` stops with, placeholders put back; ReachedTraining if none.

    A composition error (unknown option or key, an override Hydra cannot parse) is Hydra's; any
    later one must be a ConfigError, which the CLI prints as ``distillab: config error: ...``.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from distillab.cli.train import CONFIG_DIR, composition_error
    from distillab.core.config import ConfigError
    from distillab.run.pipeline import run

    subs = substitutions(tmp, files)
    resolved = [PLACEHOLDER.sub(lambda m: subs.get(m[0], m[0]), o) for o in overrides]
    paths = [
        f"paths.root_dir={CONFIG_DIR.parent}",
        f"paths.log_dir={tmp / 'logs'}",
        f"paths.output_dir={tmp / 'run'}",
        f"paths.teachers_dir={tmp / 'teachers'}",
        f"paths.data_root={SHARED_DATA}",
    ]
    given = {o.split("=", 1)[0] for o in resolved}  # a row about a path keeps its own
    paths = [p for p in paths if p.split("=", 1)[0] not in given]
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[*BASE, *resolved, *paths])
    except HydraException as err:  # as the CLI reports it: one line, the nearest valid names
        message = composition_error(err, [*BASE, *resolved, *paths])
    else:
        try:
            with no_training():
                run(cfg)
        except ConfigError as err:
            message = str(err)
        else:
            raise ReachedTraining("the run finished without a config error")
    message = clean(message)
    # Each path as given and as resolved (the data folder may be reached through a symlink).
    pairs = {*subs.items(), *((name, str(Path(value).resolve())) for name, value in subs.items())}
    for name, value in sorted(pairs, key=lambda kv: -len(kv[1])):  # the longest path first
        message = message.replace(value, name)
    return message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"rewrite the message column of {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    rows, changed, failed = read_rows(), {}, 0
    with tempfile.TemporaryDirectory() as folder:
        files = make_files(Path(folder) / "files")
        for row in rows:
            if missing := row.missing_data():
                print(f"skipped {row.id}: no {', '.join(missing)} in {SHARED_DATA}")
                continue
            tmp = Path(tempfile.mkdtemp(dir=folder))
            try:
                message = error_of(row.overrides, tmp, files)
            except Exception as err:  # noqa: BLE001 - reported, the row left as it is
                print(f"FAILED {row.id}: {type(err).__name__}: {err}")
                failed += 1
                continue
            if message != row.message:
                print(f"{'updated' if args.update else 'differs'} {row.id}\n  was: {row.message}\n  now: {message}")
                changed[row.line] = message
    if args.update and changed:
        write_messages(changed)
    print(f"{len(rows)} rows, {len(changed)} {'updated' if args.update else 'differ'}, {failed} failed")
    return 1 if failed or (changed and not args.update) else 0


if __name__ == "__main__":
    sys.exit(main())
