"""Backbones usable from mmdet, mmseg and mmpretrain configs."""
from .swin import SwinTransformer
from .vision_transformer import VisionTransformer

__all__ = ['SwinTransformer', 'VisionTransformer']
