"""High-level entry points (as ``mmdet.apis``); they need the ``det`` extra and are imported on
first use."""
from mmext.utils.lazy_exports import lazy_exports

__getattr__ = lazy_exports(__name__, {'inference_large_image': '.inference'})

__all__ = ['inference_large_image']
