"""Compiled operators of mmext (``mmext._ext``, sources in ``csrc/``) and their Python side.

Importing this package never requires the compiled library: each op loads it on first use,
with an error that says how to rebuild it when it is missing or stale.
"""
from .layer_norm import FusedLayerNorm, fused_layer_norm
from .linear_sum_assignment import compiled_linear_sum_assignment, compiled_lsa_usable
from .match_cost import (fused_match_costs, fused_match_costs_usable, pairwise_box_iou,
                         pairwise_box_l1)

__all__ = ['FusedLayerNorm', 'fused_layer_norm', 'compiled_linear_sum_assignment', 'compiled_lsa_usable', 'fused_match_costs',
           'fused_match_costs_usable', 'pairwise_box_iou', 'pairwise_box_l1']
