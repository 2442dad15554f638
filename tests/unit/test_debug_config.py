"""debug=tiny: the tests' tiny sizes as a config group a user can run."""

from hydra import compose, initialize_config_dir

from conftest import TINY_STUDENT, TINY_TEACHER
from distillab.cli.train import CONFIG_DIR


def compose_with(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=False)


def test_debug_tiny_sets_the_tiny_shapes_over_an_experiment():
    cfg = compose_with("experiment=digits_kd", "debug=tiny")
    assert {k: cfg.model.teacher[k] for k in TINY_TEACHER} == TINY_TEACHER
    assert {k: cfg.model.student[k] for k in TINY_STUDENT} == TINY_STUDENT
    assert (cfg.teacher.max_epochs, cfg.trainer.max_epochs) == (2, 2)
    # the experiment's other settings stay
    assert cfg.loss == compose_with("experiment=digits_kd").loss


def test_command_line_keys_win_over_debug_tiny():
    cfg = compose_with("experiment=digits_kd", "debug=tiny", "trainer.max_epochs=1", "model.student.hidden_size=8")
    assert (cfg.trainer.max_epochs, cfg.model.student.hidden_size) == (1, 8)


def test_without_debug_the_experiment_keeps_its_sizes():
    cfg = compose_with("experiment=digits_kd")
    assert cfg.model.teacher.hidden_size != TINY_TEACHER["hidden_size"]
