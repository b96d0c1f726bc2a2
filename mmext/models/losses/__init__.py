"""Losses; the toolbox's generic ones (``mmdet.FocalLoss`` ...) are used through their scope."""
from .dice_loss import DiceLoss, dice_loss
from .focal_loss import SigmoidFocalLossSum, focal_loss_from_labels

__all__ = ['DiceLoss', 'dice_loss', 'SigmoidFocalLossSum', 'focal_loss_from_labels']
