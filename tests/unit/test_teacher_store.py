"""The teacher store: atomic entries, damaged entries detected and removed, clear load errors."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.core.keys import teacher_key
from distillab.teachers import TeacherStore, load_teacher_weights


def test_key_is_stable_and_sensitive():
    a = {"model": {"hidden_size": 32}, "seed": 1}
    assert teacher_key(a) == teacher_key({"seed": 1, "model": {"hidden_size": 32}})
    assert teacher_key(a) != teacher_key({"model": {"hidden_size": 32}, "seed": 2})


def test_round_trip(tmp_path, tiny_vit):
    store, model = TeacherStore(tmp_path), tiny_vit()
    assert store.lookup("k") is None
    entry = store.save("k", model, {"a": 1}, {"test": {"acc": 0.5}})
    assert store.lookup("k") == entry and store.metrics("k")["test"]["acc"] == 0.5
    assert not list(tmp_path.glob(".tmp-*"))
    other = tiny_vit()
    load_teacher_weights(other, entry)
    for p, q in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("damage", ["truncate_weights", "drop_manifest"])
def test_damaged_entry_is_removed(tmp_path, tiny_vit, damage):
    store = TeacherStore(tmp_path)
    entry = store.save("k", tiny_vit(), {}, {"test": {}})
    if damage == "truncate_weights":
        data = (entry / "weights.safetensors").read_bytes()
        (entry / "weights.safetensors").write_bytes(data[: len(data) // 2])
    else:
        (entry / "manifest.json").unlink()
    assert store.lookup("k") is None
    assert not entry.exists()


def test_load_errors_name_the_key(tmp_path, tiny_vit):
    with pytest.raises(ConfigError, match="teacher.ckpt_path") as err:
        load_teacher_weights(tiny_vit(), tmp_path / "missing.ckpt")
    assert "no such file" in str(err.value)
    entry = TeacherStore(tmp_path).save("k", tiny_vit(), {}, {"test": {}})
    with pytest.raises(ConfigError, match="does not match"):
        load_teacher_weights(tiny_vit(hidden_size=64), entry)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable"):
        load_teacher_weights(tiny_vit(), tmp_path / "junk.pt")


def test_how_a_teacher_is_cached_is_not_part_of_its_store_key():
    """cache.mode / cache_budget_mb / cache_topk say how outputs are kept: a sweep over them
    must reuse one stored teacher (a sweep over cache_topk once retrained it)."""
    from hydra import compose, initialize_config_dir

    from distillab.cli.train import CONFIG_DIR
    from distillab.run.teachers import TeacherSpec, store_key

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        keys = {
            store_key(cfg, TeacherSpec("teacher", "model.teacher", cfg.model.teacher, 0))
            for cfg in (
                compose("train", overrides=o) for o in ([], ["cache.mode=off"], ["cache.topk=8"], ["cache.budget_mb=1"])
            )
        }
        other = compose("train", overrides=["teacher.max_epochs=3"])
    assert len(keys) == 1
    assert store_key(other, TeacherSpec("teacher", "model.teacher", other.model.teacher, 0)) not in keys
