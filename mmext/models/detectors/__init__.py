"""mmext detectors."""
from .deformable_detr import DeformableDETR
from .detr import DETR

__all__ = ['DETR', 'DeformableDETR']
