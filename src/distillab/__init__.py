"""distillab: teacher-student training of Transformer models on Lightning and Hydra."""

__version__ = "0.1.0"
