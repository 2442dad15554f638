"""The README.md model card of an exported student: where it came from and how well it does.

A folder without its story is a model nobody can trust or rebuild. The card says what the
model was distilled from (each teacher, where it came from and its teacher-store key), with
which loss on which data, its test metrics beside the teachers' (from metrics.json, or what
the run is about to write there), and the command that reproduces the run. The front matter
is the Hub's (``library_name``, ``pipeline_tag``, ``tags``), so a Hub page renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def run_command(run_dir: Path) -> str | None:
    """``distillab <overrides>`` of the run, from Hydra's ``.hydra/overrides.yaml`` (as report.md
    writes it); None when the run has none (started from Python)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    overrides = yaml.safe_load(path.read_text()) or []
    return " ".join(["distillab", *map(str, overrides)])


@dataclass
class CardFacts:
    """What the card is written from: the run's metrics (metrics.json's layout) and resolved
    config, the exported model's role in them, and the command of the run."""

    role: str  # student, pruned, baseline, teacher, ...
    run_dir: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    command: str | None = None  # None: not known (no .hydra/overrides.yaml)

    @property
    def distilled(self) -> bool:
        """Whether the model learnt from the run's teachers (a baseline or a teacher did not)."""
        return self.role != "baseline" and not self.role.startswith("teacher")

    def teachers(self) -> list[dict[str, Any]]:
        if not self.distilled:
            return []
        listed = self.metrics.get("teachers") or ([self.metrics["teacher"]] if self.metrics.get("teacher") else [])
        return [t for t in listed if t.get("role") != self.role]

    def entry(self) -> dict[str, Any]:
        found = self.metrics.get(self.role)
        if isinstance(found, dict):
            return found
        return next((t for t in self.metrics.get("teachers") or [] if t.get("role") == self.role), {})


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _yaml_block(value: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip() + "\n```"


def _metrics_table(facts: CardFacts) -> str:
    """Test metrics by model: the exported one first, then its teachers."""
    models = [(f"{facts.role} (this model)", facts.entry()), *((t.get("role", "teacher"), t) for t in facts.teachers())]
    names = sorted({k for _, e in models for k, v in (e.get("test") or {}).items() if isinstance(v, (int, float))})
    if not names:
        return "No test metrics were recorded."
    head = ["model", "params", *names]
    rows = [
        [name, _number(e.get("params")), *(_number((e.get("test") or {}).get(k)) for k in names)] for name, e in models
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    said = {
        "retention": "retention (its accuracy / the teacher's)",
        "param_ratio": "parameter ratio (its / the teacher's)",
    }
    # metrics.json's retention and ratio are the student's (not a pruned or a baseline model's).
    figures = facts.metrics if facts.role == "student" else {}
    extra = [f"{said[k]} {_number(figures[k])}" for k in said if figures.get(k) is not None]
    text = "; ".join(extra)
    return "\n".join(lines) + (f"\n\n{text[:1].upper()}{text[1:]}." if extra else "")


def _teachers_text(facts: CardFacts) -> str:
    teachers = facts.teachers()
    if not teachers:
        return f"`{facts.role}` was trained on labels alone, without a teacher."
    lines = [f"`{facts.role}` was distilled ({facts.config.get('mode', 'offline')}) from:", ""]
    for t in teachers:
        where = f"teacher store key `{t['store_key']}`" if t.get("store_key") else "no store entry (a checkpoint)"
        lines.append(
            f"- `{t.get('role', 'teacher')}`: source `{t.get('source', '-')}`, {where}, {_number(t.get('params'))} parameters"
        )
    model = facts.config.get("model") or {}
    if model.get("teacher"):
        lines += ["", "The teacher's model config:", "", _yaml_block(model["teacher"])]
    return "\n".join(lines)


def _shape_text(export: dict[str, Any]) -> str:
    shape = export.get("shape") or {}
    zero = shape.get("zero_heads") or {}
    if not zero:
        return ""
    heads = ", ".join(f"layer {k}: {v}" for k, v in zero.items())
    return (
        "\n\n## Pruned attention heads\n\n"
        f"Heads removed by structured pruning ({heads}) are stored as zero heads: transformers 5 "
        "configs cannot give a layer fewer heads, and a zero head adds nothing, so the logits are "
        "those of the pruned model (the weights file has the unpruned size)."
    )


def model_card(facts: CardFacts, export: dict[str, Any], pipeline_tag: str) -> str:
    """The README.md text; ``export``: :meth:`HFExport.as_dict` (auto class, logit check)."""
    front = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "tags": ["distillab", "knowledge-distillation", *(["pruned"] if facts.role == "pruned" else [])],
    }
    auto = export["auto_class"]
    command = facts.command if facts.command is not None else "(not recorded: the run had no .hydra/overrides.yaml)"
    sections = [
        "---\n" + yaml.safe_dump(front, sort_keys=False).rstrip() + "\n---",
        f"# {facts.role}: a model trained with distillab",
        f"Exported from the run `{facts.run_dir}`. Load it with\n\n```python\n"
        f'from transformers import {auto}\nmodel = {auto}.from_pretrained("<this folder>")\n```\n\n'
        f"Loaded back this way it gave the run's logits (largest difference {export['max_abs_diff']:.2g}, "
        "checked at export).",
        "## Distilled from\n\n" + _teachers_text(facts),
        "## Test metrics\n\n" + _metrics_table(facts),
        "## Loss\n\n" + _yaml_block(facts.config.get("loss")),
        "## Data\n\n" + _yaml_block(facts.config.get("data")),
        "## Reproduce\n\n```bash\n" + command + "\n```" + _shape_text(export),
    ]
    return "\n\n".join(sections) + "\n"
