"""Metrics registered in the mmext scope."""
from .ranking import RankingMetric
from .retrieval_recall import RetrievalRecall
from .zero_shot_accuracy import ZeroShotAccuracy

__all__ = ['RankingMetric', 'RetrievalRecall', 'ZeroShotAccuracy']
