"""Results never silently wrong: the Trainer keys of a teacher's store key, signals that stop a
run honestly, a run folder locked while a process trains in it, key typos with suggestions."""

import os
import signal
import sys
import time

import lightning as L
import pytest
from filelock import FileLock, Timeout
from hydra import compose, initialize_config_dir

from distillab.cli.train import CONFIG_DIR, composition_error, explain, hydra_composition_errors, main
from distillab.modules import ClassifierModule
from distillab.run import teachers
from distillab.run.fitting import (
    Interrupted,
    Stop,
    doing,
    handling_signals,
    holding_signals,
    raise_if_signalled,
    signal_received,
)
from distillab.run.folder import LOCK, RunInUse, locked_run_dir
from distillab.run.resume import register
from distillab.run.teachers import TeacherSpec, provide_teacher, store_key, unstorable_reason


def composed(*overrides: str, tmp_path=None):
    names = ("root_dir", "output_dir", "log_dir", "teachers_dir")
    paths = [f"paths.{name}={tmp_path / name}" for name in names] if tmp_path else []
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*overrides, *paths])


def key_of(cfg):
    return store_key(cfg, TeacherSpec("teacher", "model.teacher", cfg.model.teacher, 0))


# The teacher store's key.


def test_every_trainer_argument_is_classified_for_the_store_key():
    """A Lightning upgrade that adds a Trainer argument fails here until it is put in one group."""
    groups = [teachers.TEACHER_TRAINER_KEYS, teachers.TEACHER_UNSTORABLE_KEYS, teachers.TRAINER_KEYS_IGNORED]
    named = [key for group in groups for key in group]
    assert len(named) == len(set(named)) and set(named) == set(teachers.trainer_defaults())


def test_trainer_keys_that_change_a_teacher_change_its_key_and_lightning_defaults_do_not():
    default = key_of(composed())
    changed = ["+trainer.max_steps=1", "+trainer.limit_val_batches=2", "trainer.devices=2"]
    assert len({default, *(key_of(composed(o)) for o in changed)}) == 1 + len(changed)
    assert key_of(composed("+trainer.max_steps=-1")) == default, "Lightning's default is the unset key"
    assert key_of(composed("trainer.log_every_n_steps=1", "trainer.max_epochs=3")) == default


def test_callbacks_that_change_a_teacher_change_its_key_and_those_that_only_show_do_not():
    default = key_of(composed())
    early = "+callbacks.early_stopping={_target_:lightning.pytorch.callbacks.EarlyStopping,monitor:val/acc,mode:max}"
    changed = [early, "callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"]
    assert len({default, *(key_of(composed(o)) for o in changed)}) == 1 + len(changed)
    lr_monitor = "+callbacks.lr={_target_:lightning.pytorch.callbacks.LearningRateMonitor}"
    assert key_of(composed("callbacks.progress_bar.refresh_rate=1", lr_monitor)) == default


def test_debug_and_wall_clock_teachers_are_not_storable():
    assert unstorable_reason(composed()) is None
    assert unstorable_reason(composed("+trainer.fast_dev_run=false")) is None
    assert unstorable_reason(composed("+trainer.fast_dev_run=true")) == "trainer.fast_dev_run=True: a debug run"
    assert unstorable_reason(composed("+trainer.max_time=00:00:01:00")).startswith("trainer.max_time='00:00:01:00'")


def test_a_one_step_teacher_never_serves_a_full_run_and_a_debug_one_is_not_stored(
    tmp_path, digits, tiny_vit, monkeypatch
):
    trained = []
    monkeypatch.setattr(teachers, "fit_and_test", lambda module, role, *a, **k: trained.append(role) or {"acc": 0.1})

    def provide(*overrides):
        cfg = composed(*overrides, tmp_path=tmp_path)
        return provide_teacher(cfg, TeacherSpec("teacher", "model.teacher", cfg.model.teacher, 0), tiny_vit(), digits)

    one_step = provide("+trainer.max_steps=1")
    assert one_step["source"] == "trained" and one_step["store_key"] is not None
    full = provide()
    assert full["source"] == "trained" and full["store_key"] != one_step["store_key"], "not the one-step teacher"
    debug = provide("+trainer.fast_dev_run=true")
    assert debug["source"] == "trained" and debug["store_key"] is None
    assert provide("+trainer.fast_dev_run=true")["source"] == "trained", "never stored, so never reused"
    assert provide()["source"] == "store" and len(trained) == 4
    assert sorted(p.name for p in (tmp_path / "teachers_dir").iterdir() if not p.name.endswith(".lock")) == sorted(
        [one_step["store_key"], full["store_key"]]
    )


# Signals.


class SignalAt(L.Callback):
    """Sends this process ``signum`` after training step ``step``, as a scheduler would."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def tiny_fit(digits, tiny_vit, callback) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )
    with doing("teacher training"):
        trainer.fit(ClassifierModule(tiny_vit(hidden_size=16, num_layers=1), digits.num_classes), datamodule=digits)
    return trainer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_training_stops_it_at_once_and_is_recorded(digits, tiny_vit, signum):
    before = signal.getsignal(signum)
    with handling_signals():
        with pytest.raises((SystemExit, Interrupted)):  # Lightning's SIGTERMException / its exit after Ctrl-C
            tiny_fit(digits, tiny_vit, SignalAt(signum, 2))
        assert signal_received() == Stop(signum, "during teacher training")
    assert signal.getsignal(signum) is before, "the handlers before the run come back"
    stop = Stop(signum, "during teacher training")
    assert stop.exit_code == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
    assert stop.message == f"interrupted by {stop.name} during teacher training; the same command continues it"


def test_a_signal_outside_training_raises_at_once_and_a_held_one_when_its_block_ends():
    with handling_signals(), pytest.raises(Interrupted, match="by SIGTERM during setup"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before
    with handling_signals():
        with pytest.raises(Interrupted, match="by SIGINT during storing"):
            with doing("storing"):
                with holding_signals():
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                finished = True  # the held block ran to its end
        assert finished
        with pytest.raises(Interrupted):
            raise_if_signalled()


# The run folder's lock.


def test_a_run_folder_held_by_a_live_process_is_not_trained_in_twice(tmp_path):
    cfg = composed(tmp_path=tmp_path)
    (tmp_path / "output_dir").mkdir()
    other = FileLock(tmp_path / "output_dir" / LOCK, timeout=0)  # another process, as flock sees it
    with other:
        with pytest.raises(RunInUse) as err, locked_run_dir(cfg, multirun=False):
            pass
    assert explain(err.value) == (5, f"run in use: {err.value}")
    with locked_run_dir(cfg, multirun=False), pytest.raises(Timeout):
        other.acquire()
    other.acquire()  # released when the run ends
    other.release()


def test_a_second_command_stops_even_before_the_first_has_a_checkpoint(tmp_path):
    first = composed(tmp_path=tmp_path)
    first.paths.output_dir = str(tmp_path / "first")
    register(first, tmp_path / "first")  # as the first command does when it opens its folder
    (tmp_path / "first").mkdir()
    with FileLock(tmp_path / "first" / LOCK, timeout=0):  # still training, no checkpoint yet
        with (
            pytest.raises(RunInUse, match="first is being trained"),
            locked_run_dir(composed(tmp_path=tmp_path), False),
        ):
            pass
        with locked_run_dir(composed("ckpt_path=null", tmp_path=tmp_path), False):
            pass  # a separate run, asked for
    with locked_run_dir(composed(tmp_path=tmp_path), False):
        pass  # the first has ended: this one starts afresh


# Key typos and unknown options: one line, exit 2, the nearest names.


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "loss.temprature=2",
            "loss.temprature=2: is not in the config; did you mean loss.temperature? "
            "(to add a new key: +loss.temprature=2)",
        ),
        (
            "trainer.max_epoch=1",
            "trainer.max_epoch=1: is not in the config; did you mean trainer.max_epochs? "
            "(to add a new key: +trainer.max_epoch=1)",
        ),
        ("model/studnet=x", "model/studnet='x': is not a config group; did you mean model/student?"),
        (
            "loss.beta=1",
            "loss.beta=1: is not in the config; loss has _target_, alpha, temperature (to add a new key: +loss.beta=1)",
        ),
    ],
)
def test_a_key_typo_names_the_nearest_keys(override, message):
    overrides = ["experiment=digits_kd", override]
    with pytest.raises(Exception) as err:
        composed(*overrides)
    assert composition_error(err.value, overrides) == message


def test_an_unknown_option_names_the_nearest_options():
    with pytest.raises(Exception) as err:
        composed("data=sst3")
    assert composition_error(err.value, ["data=sst3"]).startswith(
        "data='sst3': is not an option of data; did you mean sst2? (options: agnews, chat, digits,"
    )


def test_the_cli_gives_a_typo_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["distillab", "loss.temprature=2"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "distillab: config error: loss.temprature=2: is not in the config; did you mean loss.temperature? "
        "(to add a new key: +loss.temprature=2)\n"
    )


def test_other_errors_still_go_to_hydras_reporter(monkeypatch, capsys):
    from hydra._internal import utils as hydra_internal

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with hydra_composition_errors(), pytest.raises(SystemExit) as exit_:
        hydra_internal.run_and_report(lambda: 1 / 0)
    assert exit_.value.code == 1 and "ZeroDivisionError" in capsys.readouterr().err
