"""The console scripts: ``distillab`` (train.py) and ``distillab-summarize`` (summarize.py)."""

from distillab.cli.train import CONFIG_DIR, explain, main

__all__ = ["CONFIG_DIR", "explain", "main"]
