"""Helpers of mmext's models that are not modules of their own: the distributed feature gathers
(autograd functions) that the contrastive losses use under DDP."""
from .dist_gather import AllGatherWithGrad, ScaleGrad, gather_features, gather_no_grad

__all__ = ['AllGatherWithGrad', 'ScaleGrad', 'gather_features', 'gather_no_grad']
