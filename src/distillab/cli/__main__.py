"""``python -m distillab.cli``: the same as the ``distillab`` command."""

from distillab.cli.train import main

main()
