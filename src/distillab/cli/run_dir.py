"""The run's folder, checked before Hydra makes it: Hydra creates ``hydra.run.dir`` (a
multirun's ``hydra.sweep.dir``) before any distillab code runs, so a folder under a file or
without write permission would stop the command with Hydra's traceback instead of one line.
Registered as a Hydra callback in conf/train.yaml (``hydra.callbacks.run_dir``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from distillab.core.config import ConfigError, check_writable


def check_run_dir(key: str, folder: str) -> None:
    """``folder`` writable, else the config error's line on stderr and exit code 2 (as the CLI
    gives every config error; Hydra lets SystemExit through)."""
    try:
        check_writable(key, Path(folder))
    except ConfigError as err:
        print(f"distillab: config error: {err}", file=sys.stderr)
        sys.exit(2)


class RunDirCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_run_dir("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_run_dir("hydra.sweep.dir", config.hydra.sweep.dir)
