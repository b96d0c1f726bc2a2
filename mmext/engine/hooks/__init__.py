"""Hooks registered in the mmext scope."""
from .itc_alpha_warmup_hook import ITCAlphaWarmupHook
from .visualization_hook import VisualizationHook

__all__ = ['ITCAlphaWarmupHook', 'VisualizationHook']
