"""Damaged files heal: store and cache entries are removed and rebuilt (a file in an entry's
place too), a damaged checkpoint is set aside, and a checkpoint with its hash is one entry
that a kill at any step leaves resumable, with no epoch lost."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from distillab.core.checkpoints import (
    CorruptCheckpointError,
    HashedCheckpointIO,
    hash_path,
    partial_path,
    resumable,
    save_steps,
)
from distillab.teachers import TeacherStore
from distillab.teachers.cache import SplitRequest, TeacherOutputCache
from distillab.teachers.ensemble import Teachers
from distillab.teachers.frozen import FrozenTeacher


def stored(tmp_path):
    store = TeacherStore(tmp_path)
    return store, store.save("k", nn.Linear(3, 2), {"a": 1}, {"test": {"acc": 0.5}})


@pytest.mark.parametrize("damage", ["empty", "not_json", "no_test", "missing"])
def test_a_store_entry_with_damaged_metrics_is_removed_and_retrained(tmp_path, caplog, damage):
    store, entry = stored(tmp_path)
    metrics = entry / "metrics.json"
    if damage == "missing":
        metrics.unlink()
    else:
        metrics.write_text({"empty": "", "not_json": '{"test": {"acc', "no_test": "[1, 2]"}[damage])
    with caplog.at_level(logging.WARNING, "distillab.teachers.store"):
        assert store.lookup("k") is None
    assert not entry.exists()
    (line,) = caplog.messages
    assert str(entry) in line and "training the teacher again" in line
    store.save("k", nn.Linear(3, 2), {}, {"test": {"acc": 0.7}})  # the retrained teacher
    assert store.lookup("k") == entry and store.metrics("k")["test"]["acc"] == 0.7


@pytest.mark.parametrize("kind", ["file", "dangling_link"])
def test_a_file_in_a_store_entrys_place_is_really_removed(tmp_path, caplog, kind):
    store = TeacherStore(tmp_path)
    entry = store.path("k")
    if kind == "file":
        entry.write_text("not an entry")
    else:
        entry.symlink_to(tmp_path / "gone")
    with caplog.at_level(logging.WARNING, "distillab.teachers.store"):
        assert store.lookup("k") is None
    assert not entry.exists() and not entry.is_symlink()
    assert "not a folder" in caplog.text
    entry.write_text("again")  # save over a file directly: the rename cannot put a folder there
    assert store.save("k", nn.Linear(3, 2), {}, {"test": {}}) == entry and store.lookup("k") == entry


def test_a_file_in_a_cache_entrys_place_is_removed_and_rebuilt(digits, tiny_vit, tmp_path, caplog):
    teachers = Teachers([FrozenTeacher(tiny_vit(hidden_size=16, num_layers=1, num_heads=1))])
    request = SplitRequest("val", digits.splits["val"])
    cache = TeacherOutputCache("disk", tmp_path)
    entry = cache.root / cache.key(teachers, request)
    entry.parent.mkdir(parents=True)
    entry.write_text("not an entry")
    with caplog.at_level(logging.WARNING, "distillab.teachers.cache"):
        cache.prepare(teachers, request)
    assert "not a folder" in caplog.text and entry.is_dir() and cache.built == [entry.name]
    assert cache.cached("val")


# -- checkpoints -------------------------------------------------------------------------------


def checkpoint(epoch: int) -> dict:
    # 16 KB of weights, most of the file: a byte flipped in its middle is in the weights.
    return {"epoch": epoch, "state_dict": {"w": torch.full((4096,), float(epoch))}}


def saved(folder, epoch: int):
    last = folder / "last.ckpt"
    HashedCheckpointIO().save_checkpoint(checkpoint(epoch), last)
    return last


def epoch_of(path) -> int:
    return HashedCheckpointIO().load_checkpoint(path)["epoch"]


def serialized(epoch: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint(epoch), buffer)
    return buffer.getvalue()


STEPS = len(save_steps(b"", Path("last.ckpt")))  # building the steps writes nothing


@pytest.mark.parametrize("done", range(STEPS + 1))
def test_a_kill_at_any_step_of_a_save_loses_no_epoch(tmp_path, done):
    """Epoch 9 is saved over epoch 8 and the process is killed after ``done`` steps: the
    resumed stage continues from epoch 9 once its bytes were all written (2 steps), else from
    epoch 8; never from the start."""
    last = saved(tmp_path, 8)
    for step in save_steps(serialized(9), last)[:done]:
        step()
    assert resumable(tmp_path) == last
    assert epoch_of(last) == (9 if done >= 2 else 8)
    assert hash_path(last).is_file()
    assert not partial_path(last).exists() and not partial_path(hash_path(last)).exists()
    assert not list(tmp_path.glob("*.corrupt*"))


def test_a_checkpoint_without_its_hash_that_opens_is_resumed_and_its_hash_recorded(tmp_path):
    last = saved(tmp_path, 3)
    hash_path(last).unlink()  # copied from elsewhere without it
    assert resumable(tmp_path) == last and hash_path(last).is_file()
    assert epoch_of(last) == 3


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte", "text"])
def test_a_damaged_checkpoint_without_a_hash_is_set_aside(tmp_path, caplog, damage):
    last = saved(tmp_path, 3)
    hash_path(last).unlink()
    data = bytearray(last.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped_byte":  # torch.load would not notice; the archive's CRC-32 does
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint")
    last.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"last\.ckpt is damaged") as err:
        HashedCheckpointIO().load_checkpoint(last)
    assert "\n" not in str(err.value)
    with caplog.at_level(logging.WARNING, "distillab.core.checkpoints"):
        assert resumable(tmp_path) is None
    (line,) = caplog.messages
    assert "kept as last.ckpt.corrupt" in line and "trains from the start" in line
    assert (tmp_path / "last.ckpt.corrupt").read_bytes() == bytes(data) and not last.exists()


def test_a_checkpoint_that_does_not_match_its_hash_is_set_aside_without_overwriting_an_earlier_one(tmp_path):
    (tmp_path / "last.ckpt.corrupt").write_bytes(b"set aside before")
    last = saved(tmp_path, 3)
    hash_path(last).write_text("0" * 64)
    assert resumable(tmp_path) is None
    assert (tmp_path / "last.ckpt.corrupt").read_bytes() == b"set aside before"
    assert (tmp_path / "last.ckpt.corrupt.1").is_file() and not hash_path(last).exists()


def test_removing_a_checkpoint_removes_its_hash_and_partial_files(tmp_path):
    last = saved(tmp_path, 1)
    partial_path(last).write_bytes(b"cut short")
    HashedCheckpointIO().remove_checkpoint(last)
    assert list(tmp_path.iterdir()) == []
