"""Optimizers and optimizer-wrapper constructors registered in the mmext scope."""
