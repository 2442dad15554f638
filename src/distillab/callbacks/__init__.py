"""Lightning callbacks of our own (the rest come from Lightning, built from conf/callbacks)."""

from distillab.callbacks.step_timer import StepTimer

__all__ = ["StepTimer"]
