"""Data transforms of mmext (they need mmcv: the ``det`` extra)."""
from .load_image_crop import LoadImageCrop

__all__ = ['LoadImageCrop']
