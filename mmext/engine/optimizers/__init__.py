"""Optimizers and optimizer-wrapper constructors registered in the mmext scope."""
from .adagrad_momentum import AdagradM
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor

__all__ = ['AdagradM', 'LayerDecayOptimWrapperConstructor']
