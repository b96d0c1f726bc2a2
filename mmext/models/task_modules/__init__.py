"""Task modules (assigners, match costs); importing registers them in mmext's ``TASK_UTILS``."""
from .assigners import *  # noqa: F401,F403
from .assigners import __all__  # noqa: F401
