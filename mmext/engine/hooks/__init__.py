"""Hooks registered in the mmext scope."""
from .embedding_trajectory_hook import EmbeddingTrajectoryHook
from .itc_alpha_warmup_hook import ITCAlphaWarmupHook
from .visualization_hook import VisualizationHook

__all__ = ['EmbeddingTrajectoryHook', 'ITCAlphaWarmupHook', 'VisualizationHook']
