"""mmext detectors."""
from .deformable_detr import DeformableDETR
from .detr import DETR
from .dino import DINO

__all__ = ['DETR', 'DeformableDETR', 'DINO']
