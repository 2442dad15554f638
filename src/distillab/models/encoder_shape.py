"""Checks shared by every encoder factory, so a bad shape is a config error, not a torch one."""

from __future__ import annotations

from distillab.core.config import ConfigError, check_int, check_number


def check_encoder_shape(
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    num_labels: int,
    dropout: float,
) -> None:
    check_int("hidden_size", hidden_size, low=1)
    check_int("num_layers", num_layers, low=1)
    check_int("num_heads", num_heads, low=1)
    check_int("intermediate_size", intermediate_size, low=1)
    check_int("num_labels", num_labels, low=2)
    check_number("dropout", dropout, low=0, high=1, high_open=True)
    if hidden_size % num_heads:
        raise ConfigError(
            "num_heads", num_heads, f"must divide hidden_size={hidden_size} (each head gets hidden_size / num_heads)"
        )
