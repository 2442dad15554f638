"""Model factories: shapes from config keys, config errors for impossible shapes, the adapter."""

import pytest
import torch

from distillab.core.config import ConfigError
from distillab.models import ModelOutput, build_bert, build_vit


def test_vit_logits_and_optional_hidden_states_and_attentions(tiny_vit):
    model = tiny_vit(num_layers=2)
    x = torch.rand(3, 1, 8, 8)
    plain = model(x)
    assert isinstance(plain, ModelOutput)
    assert plain.logits.shape == (3, 10) and plain.hidden_states is None and plain.attentions is None
    full = model(x, hidden_states=True, attentions=True)
    assert len(full.hidden_states) == 3  # embeddings + 2 layers
    assert full.hidden_states[0].shape == (3, 17, 32)  # 16 patches + CLS
    assert len(full.attentions) == 2 and full.attentions[0].shape == (3, 2, 17, 17)
    torch.testing.assert_close(full.attentions[0].sum(-1), torch.ones(3, 2, 17))  # post-softmax
    torch.testing.assert_close(full.logits, plain.logits)


def test_bert_classifier_from_shape_keys():
    model = build_bert(
        num_labels=3, vocab_size=50, max_length=12, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32
    )
    ids = torch.randint(0, 50, (2, 12))
    out = model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert out.logits.shape == (2, 3)


@pytest.mark.parametrize(
    "shape, key",
    [
        ({"hidden_size": 32, "num_heads": 5}, "num_heads"),
        ({"patch_size": 3}, "patch_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_size": "wide"}, "hidden_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_impossible_shapes_are_config_errors(tiny_vit, shape, key):
    with pytest.raises(ConfigError) as err:
        tiny_vit(**shape)
    assert err.value.key == key


def test_pretrained_must_be_a_local_folder(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_vit(num_labels=10, image_size=8, num_channels=1, pretrained=str(tmp_path / "nope"))
    assert err.value.key == "pretrained"


def test_pretrained_folder_round_trip(tiny_vit, tmp_path):
    model = tiny_vit()
    model.model.save_pretrained(tmp_path / "vit")
    loaded = build_vit(num_labels=10, image_size=8, num_channels=1, pretrained=str(tmp_path / "vit"))
    x = torch.rand(2, 1, 8, 8)
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
