"""Hooks registered in the mmext scope."""
from .itc_alpha_warmup_hook import ITCAlphaWarmupHook

__all__ = ['ITCAlphaWarmupHook']
