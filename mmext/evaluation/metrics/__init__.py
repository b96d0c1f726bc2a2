"""Metrics registered in the mmext scope."""
from .box_precision_recall import BoxPrecisionRecall
from .ranking import RankingMetric
from .retrieval_recall import RetrievalRecall
from .zero_shot_accuracy import ZeroShotAccuracy

__all__ = ['BoxPrecisionRecall', 'RankingMetric', 'RetrievalRecall', 'ZeroShotAccuracy']
