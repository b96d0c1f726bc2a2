"""mmext detectors."""
from .deformable_detr import DeformableDETR
from .detr import DETR
from .dino import DINO
from .sliding_window import SlidingWindowDetector

__all__ = ['DETR', 'DeformableDETR', 'DINO', 'SlidingWindowDetector']
