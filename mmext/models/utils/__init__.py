"""Helpers of mmext's models that are not modules of their own: the distributed feature gathers
(autograd functions) that the contrastive losses use under DDP, and the ground-truth box check
of the detection heads."""
from .dist_gather import AllGatherWithGrad, ScaleGrad, gather_features, gather_no_grad
from .gt_checks import raise_on_nonfinite_gt_boxes

__all__ = [
    'AllGatherWithGrad', 'ScaleGrad', 'gather_features', 'gather_no_grad',
    'raise_on_nonfinite_gt_boxes'
]
