"""Metrics and evaluators registered in the mmext scope."""
from .metrics import *  # noqa: F401,F403
