"""The console scripts: ``distillab`` (train.py) and ``distillab-summarize`` (summarize.py)."""
