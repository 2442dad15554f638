"""Values that Lightning, numpy or transformers would reject only later (mid-training, or with a
traceback) are refused where they enter, each with one ConfigError naming key, value and what
is allowed (issue 25). The checks are called directly on small configs; the errors table
(docs/errors.md) runs the same cases through the CLI's compose and pipeline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from distillab.core.config import SEED_END, ConfigError, check_seed
from distillab.data.text.unlabelled import read_lines
from distillab.models.pretrained import build_pretrained, pretrained_positions, read_config
from distillab.run.checks import (
    BUILT_POSITIONS,
    check_max_length,
    check_monitors,
    check_seeds,
    check_teacher_paths,
    check_trainer,
    logged_metrics,
)
from distillab.run.folder import open_run_dir
from distillab.run.resume import Resume, plan_resume

TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 64,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}


def run_cfg(**sections):
    """The keys the checks read, with the defaults' values; ``sections`` replace them."""
    base = {
        "stage": "all",
        "mode": "offline",
        "seed": 42,
        "teacher": {"seed": None, "ckpt_path": None},
        "data": {"split_seed": 0, "label_seed": 42},
        "model": {"teacher": {"pretrained": None}, "student": {"pretrained": None}},
        "trainer": {"accelerator": "auto"},
        "callbacks": {
            "model_checkpoint": {
                "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                "monitor": "val/acc",
                "mode": "max",
            }
        },
    }
    return OmegaConf.merge(base, sections)


def raises(key: str, allowed: str):
    return pytest.raises(ConfigError, match=rf"^{key}=.*{allowed}")


# Seeds: numpy takes [0, 2**32).


def test_a_seed_is_an_integer_below_2_to_the_32():
    assert check_seed("seed", SEED_END - 1) == SEED_END - 1
    for bad in (SEED_END, -1, 1.5, True):
        with raises("seed", "must be an integer >= 0 and <= 4294967295"):
            check_seed("seed", bad)


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"seed": SEED_END}, "seed"),
        ({"teacher": {"seed": SEED_END}}, "teacher.seed"),
        ({"data": {"split_seed": SEED_END}}, "data.split_seed"),
        ({"data": {"label_seed": 2**40}}, "data.label_seed"),
    ],
)
def test_every_seed_of_the_run_is_checked(sections, key):
    with raises(key, "<= 4294967295"):
        check_seeds(run_cfg(**sections))


def test_the_last_of_several_teachers_gets_a_valid_seed_too():
    two = {"model": {"teachers": [{"pretrained": None}, {"pretrained": None}]}}
    check_seeds(run_cfg(**two, seed=SEED_END - 2))  # teachers seeded 2**32 - 2 and 2**32 - 1
    with raises("seed", "<= 4294967294"):
        check_seeds(run_cfg(**two, seed=SEED_END - 1))


# The Trainer's values.


def test_gradient_accumulation_is_a_positive_integer():
    check_trainer(OmegaConf.create({"accumulate_grad_batches": 4}))
    with raises("trainer.accumulate_grad_batches", "must be an integer >= 1"):
        check_trainer(OmegaConf.create({"accumulate_grad_batches": 0}))


def test_an_accelerator_is_one_lightning_knows():
    with raises("trainer.accelerator", "must be one of auto, cpu, gpu, cuda, mps, tpu"):
        check_trainer(OmegaConf.create({"accelerator": "quantum"}))
    check_trainer(OmegaConf.create({"accelerator": "cpu"}))


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed")
def test_a_tpu_without_torch_xla_says_so():
    with raises("trainer.accelerator", "needs torch_xla, which is not installed"):
        check_trainer(OmegaConf.create({"accelerator": "tpu"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_a_gpu_where_none_is_visible_says_so():
    with raises("trainer.accelerator", "no GPU is visible"):
        check_trainer(OmegaConf.create({"accelerator": "gpu"}))


# teacher.ckpt_path: one path per teacher.


def test_a_list_of_one_path_is_one_teacher(tmp_path):
    (tmp_path / "t.pt").write_bytes(b"")
    check_teacher_paths(run_cfg(teacher={"ckpt_path": [str(tmp_path / "t.pt")]}))


def test_several_paths_for_one_teacher_or_a_path_that_is_not_a_string_are_refused(tmp_path):
    path = str(tmp_path)
    with raises("teacher.ckpt_path", "gives 2 paths for one model.teacher"):
        check_teacher_paths(run_cfg(teacher={"ckpt_path": [path, path]}))
    with raises("teacher.ckpt_path", "must be a .ckpt, weights.pt or store folder"):
        check_teacher_paths(run_cfg(teacher={"ckpt_path": [5]}))
    with raises("teacher.ckpt_path", "no such file or folder"):
        check_teacher_paths(run_cfg(teacher={"ckpt_path": [str(tmp_path / "missing.pt")]}))


# Monitored metrics: those the modules log, in the direction that is better.


def test_a_callback_monitors_a_metric_the_modules_log():
    monitor = {"callbacks": {"model_checkpoint": {"monitor": "val/nope"}}}
    with raises("callbacks.model_checkpoint.monitor", "must be a metric every model of this run logs: val/loss"):
        check_monitors(run_cfg(**monitor), "classification")
    check_monitors(run_cfg(), "classification")


def test_a_language_model_logs_perplexity_and_a_lone_student_its_agreement():
    assert "val/ppl" in logged_metrics("language_model", distills=False)
    assert "val/agreement" in logged_metrics("classification", distills=True)
    agreement = {"callbacks": {"model_checkpoint": {"monitor": "val/agreement"}}}
    check_monitors(run_cfg(stage="distill", **agreement), "classification")
    with raises("callbacks.model_checkpoint.monitor", "val/recall$"):  # the teacher does not log it
        check_monitors(run_cfg(**agreement), "classification")


def test_a_mode_that_would_keep_the_worst_model_is_refused():
    with raises("callbacks.model_checkpoint.mode", "val/acc is better when higher: use mode=max"):
        check_monitors(run_cfg(callbacks={"model_checkpoint": {"mode": "min"}}), "classification")
    ppl = {"callbacks": {"model_checkpoint": {"monitor": "val/ppl", "mode": "min"}}}
    check_monitors(run_cfg(**ppl), "language_model")
    stopping = {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": "val/acc"}  # mode: min
    with raises("callbacks.early_stopping.mode", "use mode=max"):
        check_monitors(run_cfg(callbacks={"early_stopping": stopping}), "classification")
    with raises("callbacks.early_stopping.monitor", "must be a metric"):  # EarlyStopping needs one
        check_monitors(run_cfg(callbacks={"early_stopping": {**stopping, "monitor": None}}), "classification")


def test_a_checkpoint_without_a_monitor_keeps_the_last_epoch():
    check_monitors(run_cfg(callbacks={"model_checkpoint": {"monitor": None}}), "classification")


# data.max_length: within every model's positions, checked before the texts are padded to it.


@pytest.fixture
def bert_folder(tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_BERT))
    return folder


def test_text_longer_than_a_model_built_here_reads_is_refused():
    check_max_length(run_cfg(), BUILT_POSITIONS)
    with raises("data.max_length", "must be <= 512: model.teacher, built here, reads at most 512 positions"):
        check_max_length(run_cfg(), 100000)
    with raises("data.max_length", "model.student, built here"):
        check_max_length(run_cfg(stage="baseline"), 513)


def test_text_longer_than_a_pretrained_model_reads_is_refused(bert_folder):
    cfg = run_cfg(model={"teacher": {"pretrained": str(bert_folder)}})
    assert pretrained_positions(str(bert_folder)) == 32
    check_max_length(cfg, 32)
    with raises("data.max_length", "must be <= 32: model.teacher.pretrained reads at most 32 positions"):
        check_max_length(cfg, 33)


# Pretrained folders that transformers cannot read: one line naming the folder.


def test_a_config_json_that_is_not_json_names_the_folder(bert_folder):
    (bert_folder / "config.json").write_text('{"model_type": "bert",\n')
    with raises("pretrained", "has a config.json that is not JSON"):
        read_config(bert_folder, str(bert_folder))
    cfg = run_cfg(model={"teacher": {"pretrained": str(bert_folder)}})
    with raises("model.teacher.pretrained", "not JSON"):  # before the data are read
        check_max_length(cfg, 16)


def test_an_unknown_model_type_names_the_folder(bert_folder):
    (bert_folder / "config.json").write_text(json.dumps({**TINY_BERT, "model_type": "no_such_model"}))
    with raises("pretrained", "has model_type='no_such_model' in its config.json, not a model type"):
        read_config(bert_folder, str(bert_folder))


def test_a_folder_without_weights_or_with_damaged_ones_names_the_folder(bert_folder):
    with raises("pretrained", r"holds no weights \(model.safetensors or pytorch_model.bin\)"):
        build_pretrained(str(bert_folder), num_labels=2, vocab_size=64, max_length=16)
    (bert_folder / "model.safetensors").write_bytes(b"\0" * 50)
    with raises("pretrained", r"has a weight file that cannot be read \(SafetensorError\)"):
        build_pretrained(str(bert_folder), num_labels=2, vocab_size=64, max_length=16)


# Files.


def test_unlabelled_texts_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "more.txt"
    path.write_bytes("a fine film\nun film très réussi\n".encode("latin-1"))
    with raises("unlabelled", r"is not UTF-8 text \(byte 0xe8 on line 2\)"):
        read_lines(path)


def resume_cfg(tmp_path: Path, ckpt_path: str):
    return OmegaConf.create(
        {"ckpt_path": ckpt_path, "paths": {"log_dir": str(tmp_path / "logs"), "output_dir": str(tmp_path / "new")}}
    )


def test_ckpt_path_a_file_outside_a_run_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)  # a relative file has fewer parents than a run's checkpoint
    with raises("ckpt_path", "is a file, not a run folder"):
        plan_resume(resume_cfg(tmp_path, "notes.txt"), multirun=False)


def test_ckpt_path_a_checkpoint_in_a_run_folder_continues_that_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "teacher").mkdir(parents=True)
    (run / "checkpoints" / "teacher" / "last.ckpt").write_bytes(b"")
    cfg = resume_cfg(tmp_path, str(run / "checkpoints" / "teacher" / "last.ckpt"))
    OmegaConf.save(cfg, run / "config.yaml")
    assert plan_resume(cfg, multirun=False) == Resume("continue", run)


def test_a_log_dir_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    paths = {
        "output_dir": str(tmp_path / "run"),
        "teachers_dir": str(tmp_path / "t"),
        "log_dir": str(tmp_path / "file" / "logs"),
    }
    with raises("paths.log_dir", "is not writable"):
        open_run_dir(OmegaConf.create({"paths": paths}), Resume("fresh"), rank0=True)


def test_a_run_folder_hydra_cannot_make_is_a_config_error_before_it_tries(tmp_path, capsys):
    from distillab.cli.run_dir import RunDirCheck

    (tmp_path / "file").write_text("x")
    under_file = {"run": {"dir": str(tmp_path / "file" / "run")}, "sweep": {"dir": str(tmp_path / "file" / "sweep")}}
    for start in (RunDirCheck().on_run_start, RunDirCheck().on_multirun_start):
        with pytest.raises(SystemExit) as stop:
            start(config=OmegaConf.create({"hydra": under_file}))
        assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"distillab: config error: hydra.{key}.dir='{tmp_path}/file/{key}': is not writable "
        f"({tmp_path}/file is a file, not a folder)"
        for key in ("run", "sweep")
    ]
    RunDirCheck().on_run_start(config=OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "new" / "run")}}}))
    assert not (tmp_path / "new").exists()  # checked, not made: Hydra makes it
