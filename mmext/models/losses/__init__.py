"""Losses; the toolbox's generic ones (``mmdet.FocalLoss`` ...) are used through their scope.

The focal loss builds on mmdet's and is imported when first used.
"""
from mmext.utils.lazy_exports import lazy_exports

from .clip_loss import CLIPLoss
from .dice_loss import DiceLoss, dice_loss
from .feature_queue import FeatureQueue
from .itc_loss import ITCLoss

__getattr__ = lazy_exports(__name__, {
    'SigmoidFocalLossSum': '.focal_loss',
    'focal_loss_from_labels': '.focal_loss'
})

__all__ = [
    'DiceLoss', 'dice_loss', 'SigmoidFocalLossSum', 'focal_loss_from_labels', 'CLIPLoss', 'ITCLoss',
    'FeatureQueue'
]
