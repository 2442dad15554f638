"""``distillab``: the command line. Hydra composes the config; :func:`pipeline.run` does the work.

    distillab experiment=digits_kd                       # one run
    distillab -m experiment=digits_kd loss.alpha=0.5,0.9 # a sweep; the teacher is trained once
    distillab --help                                     # config groups and options
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from distillab.config import ConfigError

# A deprecation inside Lightning's own code, printed on every run; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from distillab.pipeline import run  # heavy imports after Hydra has parsed --help

    try:
        metrics = run(cfg, list(HydraConfig.get().overrides.task))
    except ConfigError as err:
        print(f"distillab: config error: {err}", file=sys.stderr)
        sys.exit(2)
    student = metrics.get("student") or metrics.get("baseline") or metrics.get("teacher")
    return student["test"]["acc"] if student else None


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
