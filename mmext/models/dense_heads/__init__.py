from .detr_head import DETRHead
from .fcos_head import FCOSHead

__all__ = ['FCOSHead', 'DETRHead']
