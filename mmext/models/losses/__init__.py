"""Losses; the toolbox's generic ones (``mmdet.FocalLoss`` ...) are used through their scope."""
from .focal_loss import SigmoidFocalLossSum, focal_loss_from_labels

__all__ = ['SigmoidFocalLossSum', 'focal_loss_from_labels']
