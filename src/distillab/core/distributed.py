"""Which process this is, for the few things only one process of a DDP run may do.

Under ``trainer=ddp`` every rank runs the whole pipeline (Lightning starts the other ranks by
running the same command again; SLURM and torchrun start them all), so training and testing
stay in step; writing the teacher store, the run's reports and its config is rank 0's job.
"""

from __future__ import annotations

import os

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig


def global_rank() -> int:
    """0 in a single-process run and on DDP's first rank (read from RANK, LOCAL_RANK, SLURM_PROCID)."""
    return int(getattr(rank_zero_only, "rank", 0))


DISTRIBUTED_STRATEGIES = ("ddp", "fsdp", "FSDPStrategy", "DDPStrategy")


def strategy_name(cfg: DictConfig) -> str:
    """``trainer.strategy`` as a name: the string itself, or the class a ``_target_`` builds."""
    strategy = cfg.trainer.get("strategy", "")
    if isinstance(strategy, DictConfig):
        return str(strategy.get("_target_", "")).rsplit(".", 1)[-1]
    return str(strategy or "")


def is_distributed(cfg: DictConfig) -> bool:
    """Whether this run trains on several processes (``trainer.strategy`` ddp* or fsdp*, as a
    name or a strategy's ``_target_``, or a launcher set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or strategy_name(cfg).startswith(DISTRIBUTED_STRATEGIES)
