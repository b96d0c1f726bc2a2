from .fcos_head import FCOSHead
from .detr_head import DETRHead

__all__ = ['FCOSHead', 'DETRHead']
