"""Few labels: the labelled fraction is stratified and seeded, the teacher sees every label,
and with every label masked the loss is the pure distillation term."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.data import DigitsDataModule
from distillab.losses import HintonKD
from distillab.models import ModelOutput


def labelled(fraction, seed):
    dm = DigitsDataModule(labelled_fraction=fraction, label_seed=seed)
    dm.setup()
    return dm


def test_labelled_fraction_is_stratified_and_seeded():
    dm = labelled(0.1, seed=3)
    train = dm.splits["train"]
    mask = train.extras["labelled"]
    assert mask.dtype == torch.bool and len(mask) == len(train)
    assert abs(int(mask.sum()) - round(0.1 * len(train))) <= 1
    per_class = train.labels[mask].bincount(minlength=10)
    share = train.labels.bincount(minlength=10) * 0.1
    assert (per_class - share).abs().max() <= 1  # each class keeps its share, give or take one
    assert torch.equal(mask, labelled(0.1, seed=3).splits["train"].extras["labelled"])
    assert not torch.equal(mask, labelled(0.1, seed=4).splits["train"].extras["labelled"])


def test_full_fraction_adds_no_mask_and_teacher_sees_every_label():
    assert "labelled" not in labelled(1.0, 0).splits["train"].extras
    dm = labelled(0.05, 0)
    teacher = dm.for_teacher()
    assert "labelled" not in teacher.splits["train"].extras
    assert len(teacher.splits["train"]) == len(dm.splits["train"])
    assert "labelled" in dm.splits["train"].batch(torch.arange(4))


@pytest.mark.parametrize("fraction", [0, 1.5, "half"])
def test_bad_fraction_is_a_config_error(fraction):
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(labelled_fraction=fraction)
    assert err.value.key == "labelled_fraction"


def test_too_small_a_fraction_names_the_key():
    with pytest.raises(ConfigError) as err:
        labelled(0.001, 0)  # 1 of 1,257 images cannot hold 10 classes
    assert err.value.key == "labelled_fraction"


def test_every_label_masked_leaves_the_pure_distillation_term():
    torch.manual_seed(0)
    student, teacher = ModelOutput(torch.randn(6, 4)), ModelOutput(torch.randn(6, 4))
    labels = torch.randint(0, 4, (6,))
    loss = HintonKD(temperature=2.0, alpha=0.7)
    none = loss(student, teacher, {"labels": labels, "labelled": torch.zeros(6, dtype=torch.bool)})
    assert none.parts["ce"].item() == 0.0
    torch.testing.assert_close(none.total, 0.7 * none.parts["kd"])
    # Some labels: CE is the mean over the labelled samples only.
    some = torch.tensor([True, False, True, False, False, False])
    part = loss(student, teacher, {"labels": labels, "labelled": some}).parts["ce"]
    expected = torch.nn.functional.cross_entropy(student.logits[some], labels[some])
    torch.testing.assert_close(part, expected)
