"""mmext models; importing this package registers them in ``mmext.registry.MODELS``."""
from . import (backbones, dense_heads, detectors, layers, losses, multimodal,  # noqa: F401
               recommenders, seg_heads, task_modules, text_encoders)
from .dense_heads import *  # noqa: F401,F403
