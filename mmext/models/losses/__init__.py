"""Losses; the toolbox's generic ones (``mmdet.FocalLoss`` ...) are used through their scope."""
from .clip_loss import CLIPLoss
from .dice_loss import DiceLoss, dice_loss
from .feature_queue import FeatureQueue
from .focal_loss import SigmoidFocalLossSum, focal_loss_from_labels
from .itc_loss import ITCLoss

__all__ = [
    'DiceLoss', 'dice_loss', 'SigmoidFocalLossSum', 'focal_loss_from_labels', 'CLIPLoss', 'ITCLoss',
    'FeatureQueue'
]
