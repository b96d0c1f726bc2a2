"""Runner, hooks and optimisation parts registered in the mmext scope."""
from .hooks import *  # noqa: F401,F403
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop
from .optimizers import *  # noqa: F401,F403
from .runner import Runner

__all__ = ['Runner', 'EpochBasedTrainLoop', 'IterBasedTrainLoop']
