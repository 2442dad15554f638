"""Vision Transformer classifiers (HF ``ViTForImageClassification``), Dosovitskiy et al. 2021."""

from __future__ import annotations

from transformers import ViTConfig, ViTForImageClassification

from distillab.core.config import ConfigError, check_int
from distillab.models.encoder_shape import encoder_keys, hf_classifier
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import build_pretrained


def build_vit(
    num_labels: int,
    image_size: int,
    num_channels: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    patch_size: int = 2,
    dropout: float = 0.0,
    attn_implementation: str = "sdpa",
    pretrained: str | None = None,
) -> TransformerClassifier:
    """A ViT from shape keys, or from a local pretrained folder when ``pretrained`` is set
    (then the folder's architecture wins over the shape keys; see models/pretrained.py).

    ``num_labels``, ``image_size`` and ``num_channels`` come from the data module.
    """
    if pretrained:
        return build_pretrained(pretrained, num_labels, image_size=image_size, num_channels=num_channels)
    shape = encoder_keys(hidden_size, num_layers, num_heads, intermediate_size, num_labels, dropout)
    check_int("patch_size", patch_size, low=1)
    if image_size % patch_size:
        raise ConfigError("patch_size", patch_size, f"must divide the data's image_size={image_size}")
    config = ViTConfig(image_size=image_size, patch_size=patch_size, num_channels=num_channels, **shape)
    return hf_classifier(ViTForImageClassification, config, attn_implementation, "pixel_values")
