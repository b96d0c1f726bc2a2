"""Assigners; importing registers them in ``mmext.registry.TASK_UTILS``."""
from .batch_assigner import PerImageBatchAssigner, as_batch_assigner
from .hungarian_assigner import HungarianAssigner
from .match_costs import (BatchedMatchCost, BBoxL1Cost, ClassificationCost, CrossEntropyLossCost,
                          DiceCost, FocalLossCost, IoUCost, MatchBatch)

__all__ = [
    'HungarianAssigner', 'PerImageBatchAssigner', 'as_batch_assigner', 'MatchBatch',
    'BatchedMatchCost', 'ClassificationCost', 'FocalLossCost', 'BBoxL1Cost', 'IoUCost',
    'CrossEntropyLossCost', 'DiceCost'
]
