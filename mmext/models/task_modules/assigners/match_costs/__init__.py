"""Batch-aware match costs for Hungarian assignment, registered in mmext's ``TASK_UTILS`` under
mmdet's names and config keys."""
from .base import BatchedMatchCost, MatchBatch
from .bbox_l1_cost import BBoxL1Cost
from .classification_cost import ClassificationCost
from .cross_entropy_loss_cost import CrossEntropyLossCost
from .dice_cost import DiceCost
from .focal_loss_cost import FocalLossCost
from .iou_cost import IoUCost
from .per_image import PerImageMatchCost, as_batched_cost

__all__ = [
    'MatchBatch', 'BatchedMatchCost', 'ClassificationCost', 'FocalLossCost', 'BBoxL1Cost',
    'IoUCost', 'CrossEntropyLossCost', 'DiceCost', 'PerImageMatchCost', 'as_batched_cost'
]
