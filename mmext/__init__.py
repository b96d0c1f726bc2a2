"""mmext: OpenMMLab components as a plugin for mmengine runners.

Importing mmext (directly or through ``custom_imports``) registers its registry nodes and lets
mmengine load its own checkpoints under torch's weights-only unpickler; the models, datasets and
hooks themselves are imported lazily the first time a registry looks them up.
"""
from . import registry  # noqa: F401  (creates the mmext registry nodes)
from .utils import register_all_modules, setup_safe_checkpoint_loading
from .version import __version__

setup_safe_checkpoint_loading()

__all__ = ['__version__', 'register_all_modules']
