"""Old config keys stop with one line naming the new key."""

import pytest
from omegaconf import OmegaConf

from conftest import config_error_key
from distillab.core.config import ConfigError
from distillab.core.renamed_keys import RENAMED, check_config, check_overrides, new_name


def test_new_names():
    assert new_name("teacher.cache_topk") == "cache.topk"
    assert new_name("teacher.cache") == "cache.mode"
    assert new_name("sequences.top_k") == "lm.sequences.top_k"
    assert new_name("export.onnx") == "compression.onnx"
    assert new_name("teacher.max_epochs") is None
    assert new_name("cache.topk") is None
    assert new_name("teacher.cache_topkx") is None


@pytest.mark.parametrize(
    "override",
    [
        "teacher.cache_topk=32",
        "+teacher.cache_samples=8",
        "quantize=int8",
        "generations.new_tokens=4",
        "~compression_report",
    ],
)
def test_old_overrides_name_the_new_key(override):
    with pytest.raises(ConfigError) as err:
        check_overrides(["-m", override])
    assert f"use {new_name(err.value.key)}=" in str(err.value)


def test_current_overrides_pass():
    check_overrides(["-m", "cache.topk=32", "compression.quantize=int8", "experiment=lm_agnews", "--help"])


def test_old_keys_in_a_composed_config():
    assert (
        config_error_key(lambda: check_config(OmegaConf.create({"teacher": {"cache_topk": 8}}))) == "teacher.cache_topk"
    )
    assert config_error_key(lambda: check_config(OmegaConf.create({"export": {"onnx": True}}))) == "export.onnx"
    check_config(OmegaConf.create({"teacher": {"max_epochs": 1}, "cache": {"topk": 8}}))


def test_every_new_name_is_a_key_of_the_root_config():
    from hydra import compose, initialize_config_dir

    from distillab.cli.train import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train")
    for new in set(RENAMED.values()):
        assert OmegaConf.select(cfg, new, default="<absent>") != "<absent>", new
    check_config(cfg)


def test_the_readme_table_lists_every_rename():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("### Renamed keys", 1)[1]
    rows = dict(re.findall(r"^\| `([\w.*]+)` \| `([\w.*]+)` \|$", readme, re.M))
    expected = {old: new for old, new in RENAMED.items() if old != "export"}  # export.onnx covers it
    for old in ("sequences", "generations"):
        expected[f"{old}.*"] = expected.pop(old) + ".*"
    assert rows == expected
