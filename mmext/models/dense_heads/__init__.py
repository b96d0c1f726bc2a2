from .deformable_detr_head import DeformableDETRHead
from .detr_head import DETRHead
from .dino_head import DINOHead
from .fcos_head import FCOSHead

__all__ = ['FCOSHead', 'DETRHead', 'DeformableDETRHead', 'DINOHead']
