"""Assigners and their solvers; importing registers them in ``mmext.registry.TASK_UTILS``."""
from .batched_lsa import batched_linear_sum_assignment
from .hungarian_assigner import HungarianAssigner
from .match_costs import (BatchedMatchCost, BBoxL1Cost, ClassificationCost,
                          CrossEntropyLossCost, DiceCost, FocalLossCost, IoUCost, MatchBatch)

__all__ = [
    'batched_linear_sum_assignment', 'HungarianAssigner', 'MatchBatch', 'BatchedMatchCost',
    'ClassificationCost', 'FocalLossCost', 'BBoxL1Cost', 'IoUCost', 'CrossEntropyLossCost',
    'DiceCost'
]
