"""A run's student as a Hugging Face folder, after the fact (what ``compression.hf`` does in a run).

    distillab-export <run folder> [--role ROLE] [--out FOLDER]
    distillab-export <run folder>/checkpoints/<role>/best.ckpt [--out FOLDER]

The model is rebuilt from the run's ``config.yaml`` (its data set up for the tokenizer and
the label names), filled from ``checkpoints/<role>/best.ckpt`` and written to
``<run>/export/<role>/`` (or ``--out``), checked by loading it back; the README card takes the
test metrics from the run's metrics.json and the command from ``.hydra/overrides.yaml``.
The default role is the run's final student: ``pruned`` when its checkpoint is there (a pruned
student with recovery epochs), else ``student``, else ``baseline``. A student that no
transformers config describes stops with one line saying why (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distillab.core.config import ConfigError, build, section
from distillab.evaluation.compression import example_inputs
from distillab.export.from_checkpoint import checkpoint_state, load_checkpoint_into
from distillab.export.hf import HFExport, export_hf
from distillab.export.hf_shape import KEY as HF_KEY
from distillab.export.hf_tokenizer import label_names_of, tokenizer_of
from distillab.export.model_card import CardFacts, run_command
from distillab.models.output import TransformerClassifier
from distillab.run.cut_student import cut_student, is_cut
from distillab.run.plan import bind_pretrained_tokenizer, build_model

PROG = "distillab-export"
FINAL_ROLES = ("pruned", "student", "baseline")


class ExportError(ValueError):
    """A path that is not a run folder or one of its checkpoints."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="a run folder, or a .ckpt under <run>/checkpoints/<role>/")
    parser.add_argument("--role", help="the model to export (default: the run's final student)")
    parser.add_argument("--out", type=Path, help="the folder to write (default: <run>/export/<role>)")
    return parser.parse_args(argv)


def locate(path: Path, role: str | None) -> tuple[Path, str, Path]:
    """(run folder, role, checkpoint) that ``path`` and ``--role`` name."""
    if path.is_file():
        if path.suffix != ".ckpt" or path.parent.parent.name != "checkpoints":
            raise ExportError(f"{path}: give a run folder or a .ckpt under <run>/checkpoints/<role>/")
        return path.parents[2], role or path.parent.name, path
    if not (path / "config.yaml").is_file():
        raise ExportError(f"{path}: not a run folder (no config.yaml)")
    checkpoints = path / "checkpoints"
    if role is None:
        role = next((r for r in FINAL_ROLES if (checkpoints / r / "best.ckpt").is_file()), None)
        if role is None:
            raise ExportError(f"{path}: no checkpoint of a student ({', '.join(FINAL_ROLES)}); name one with --role")
    ckpt = checkpoints / role / "best.ckpt"
    if not ckpt.is_file():
        have = (
            sorted(p.name for p in checkpoints.iterdir() if (p / "best.ckpt").is_file()) if checkpoints.is_dir() else []
        )
        raise ExportError(
            f"{path}: no checkpoint {ckpt.relative_to(path)} (roles with one: {', '.join(have) or 'none'})"
        )
    return path, role, ckpt


def model_node(cfg: DictConfig, role: str) -> tuple[DictConfig, str]:
    """The config node that builds ``role``'s model and its key: ``teacher<i>`` is
    ``model.teachers[i]``, ``teacher`` ``model.teacher``, every student role ``model.student``."""
    if role.startswith("teacher"):
        listed = cfg.model.get("teachers")
        if listed and role[len("teacher") :].isdigit():
            i = int(role[len("teacher") :])
            return listed[i], f"model.teachers[{i}]"
        return cfg.model.teacher, "model.teacher"
    return cfg.model.student, "model.student"


def rebuild(cfg: DictConfig, role: str, ckpt: Path) -> tuple[TransformerClassifier, Any]:
    """The model of ``role`` as the run built it (a cut student cut again, from an untrained
    teacher: only its shape matters here), filled from ``ckpt``; and the run's data, set up."""
    datamodule = build(cfg.data, "data")
    bind_pretrained_tokenizer(cfg, datamodule)
    with section("data"):
        datamodule.setup()
    node, key = model_node(cfg, role)
    if key == "model.student" and is_cut(node):
        teacher = build_model(cfg.model.teacher, "model.teacher", cfg.seed, datamodule)
        model, _ = cut_student(node, teacher, cfg.model.teacher, datamodule)
    else:
        model = build_model(node, key, cfg.seed, datamodule)
    load_checkpoint_into(model, checkpoint_state(ckpt, role), ckpt)
    return model, datamodule


def export_run(path: Path, role: str | None = None, out: Path | None = None) -> HFExport:
    """``path``'s model of ``role`` (default: the final student) as a Hugging Face folder."""
    run_dir, role, ckpt = locate(path, role)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    model, data = rebuild(cfg, role, ckpt)
    card = CardFacts(role, str(run_dir), metrics, OmegaConf.to_container(cfg, resolve=True), run_command(run_dir))
    folder = out or run_dir / "export" / role
    return export_hf(model, folder, tokenizer_of(data), label_names_of(data), card, example_inputs(data, 2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        done = export_run(args.path, args.role, args.out)
    except ConfigError as err:  # the run's own keys named as in a run; the export's reason alone
        print(f"{PROG}: {err.allowed if err.key == HF_KEY else err}", file=sys.stderr)
        return 2
    except ExportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {done.path} ({done.auto_class}; reloaded logits within {done.max_abs_diff:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
