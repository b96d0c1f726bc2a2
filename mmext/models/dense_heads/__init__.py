from .deformable_detr_head import DeformableDETRHead
from .detr_head import DETRHead
from .fcos_head import FCOSHead

__all__ = ['FCOSHead', 'DETRHead', 'DeformableDETRHead']
