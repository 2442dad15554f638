"""A student born from its teacher: copied layers hold exactly the teacher's tensors."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.models import build_bert
from distillab.models.init_from_teacher import check_init_from_teacher, init_from_teacher, teacher_layers_for


def test_every_k_and_explicit_lists():
    assert teacher_layers_for("every_k", 2, 3, 6) == [0, 2, 4]
    assert teacher_layers_for([5, 1], 2, 2, 6) == [5, 1]
    for bad in ([0, 6], [0], "every_other", [0, -1]):
        with pytest.raises(ConfigError):
            teacher_layers_for(bad, 2, 2, 6)
    with pytest.raises(ConfigError):
        teacher_layers_for("every_k", 4, 2, 4)  # layer 4 does not exist


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_copied_layers_are_the_teachers_tensors(tiny_vit, family):
    if family == "vit":
        teacher, student = tiny_vit(num_layers=4), tiny_vit(num_layers=2)
        block = "model.vit.layers."
    else:
        shape = dict(num_labels=3, vocab_size=40, max_length=8, hidden_size=16, num_heads=2, intermediate_size=32)
        teacher, student = build_bert(num_layers=4, **shape), build_bert(num_layers=2, **shape)
        block = "model.bert.encoder.layer."
    layers = check_init_from_teacher(student, teacher, "every_k", 2)
    assert layers == [0, 2]
    copied = init_from_teacher(student, teacher, layers)
    t, s = teacher.state_dict(), student.state_dict()
    assert set(copied) == set(s)  # every student tensor has a teacher counterpart
    in_blocks = [k for k in s if k.startswith(block)]
    assert in_blocks, f"no encoder block keys under {block}"
    for key, value in s.items():
        if key.startswith(block):
            i = int(key[len(block) :].split(".")[0])
            source = f"{block}{layers[i]}{key[len(block) + len(str(i)) :]}"
        else:
            source = key
        assert torch.equal(value, t[source]), key
    # student layer 1 is teacher layer 2, which differs from teacher layer 1
    layer1 = [k for k in in_blocks if k.startswith(f"{block}1.") and k.endswith("weight")][0]
    assert torch.equal(s[layer1], t[layer1.replace(f"{block}1.", f"{block}2.")])
    assert not torch.equal(s[layer1], t[layer1])
    # and not a view: training the student must not move the teacher
    next(student.parameters()).data.add_(1.0)
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))


def test_width_mismatch_is_a_clear_error(tiny_vit):
    with pytest.raises(ConfigError, match="hidden_size=16 to equal model.teacher's 32"):
        check_init_from_teacher(tiny_vit(hidden_size=16), tiny_vit(), "every_k", 2)
    with pytest.raises(ConfigError, match="tokens"):
        check_init_from_teacher(tiny_vit(patch_size=4), tiny_vit(), "every_k", 1)
