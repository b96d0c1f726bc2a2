"""mmext's operators: one function per operation, each choosing its backend (compiled kernel,
fused torch, plain torch or scipy; CPU or CUDA) from its inputs and falling back on its own.

Compiled kernels live in ``mmext._ext`` (sources in ``csrc/``).  Importing this package never
requires the compiled library, mmcv or scipy: each op loads what it needs on first use; the
explicit ``backend='compiled'`` paths raise with a rebuild hint when the library is missing or
stale.
"""
from .layer_norm import FusedLayerNorm, fused_layer_norm
from .linear_sum_assignment import LSA_BACKENDS, linear_sum_assignment
from .match_cost import (fused_match_costs, fused_match_costs_usable, pairwise_box_iou,
                         pairwise_box_l1)
from .multi_scale_deform_attn import multi_scale_deformable_attn, multi_scale_deformable_attn_torch
from .sigmoid_focal_loss import SigmoidFocalLossSum, sigmoid_focal_loss_sum

__all__ = [
    'FusedLayerNorm', 'fused_layer_norm', 'LSA_BACKENDS', 'linear_sum_assignment',
    'fused_match_costs', 'fused_match_costs_usable', 'pairwise_box_iou', 'pairwise_box_l1',
    'SigmoidFocalLossSum', 'sigmoid_focal_loss_sum', 'multi_scale_deformable_attn',
    'multi_scale_deformable_attn_torch'
]
