"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021, eq. 3): every
query gathers ``num_points`` bilinear samples per head and per feature level around its reference
point and sums them with its softmaxed attention weights.

Shapes (``bs`` images, ``num_keys = sum(H_l * W_l)`` flattened value positions, ``num_queries``
queries, ``num_heads`` heads of ``head_dims`` channels, ``num_levels`` levels, ``num_points``
samples per level):

* ``value``: ``[bs, num_keys, num_heads, head_dims]``, the levels concatenated in order;
* ``spatial_shapes``: ``[num_levels, 2]`` long, ``(H_l, W_l)`` per level;
* ``level_start_index``: ``[num_levels]`` long, where each level starts in ``num_keys``;
* ``sampling_locations``: ``[bs, num_queries, num_heads, num_levels, num_points, 2]``, ``(x, y)``
  normalised to ``[0, 1]`` over each level's map (pixel centres at ``(i + 0.5) / W``, i.e.
  ``align_corners=False``; samples outside the map read zeros);
* ``attention_weights``: ``[bs, num_queries, num_heads, num_levels, num_points]``;
* output: ``[bs, num_queries, num_heads * head_dims]``.

:func:`multi_scale_deformable_attn` picks the backend from its inputs; the plain-torch
:func:`multi_scale_deformable_attn_torch` is the reference semantics every backend must equal.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['multi_scale_deformable_attn', 'multi_scale_deformable_attn_torch']


def multi_scale_deformable_attn_torch(value: Tensor, spatial_shapes: Tensor,
                                      level_start_index: Tensor, sampling_locations: Tensor,
                                      attention_weights: Tensor) -> Tensor:
    """Reference implementation with ``F.grid_sample`` (bilinear, zero padding,
    ``align_corners=False``), one call per level; differentiable by autograd.

    ``level_start_index`` is implied by ``spatial_shapes`` here and only accepted for the
    common signature.
    """
    bs, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    sizes: List[int] = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    per_level = value.split(sizes, dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        # [bs, H*W, heads, d] -> [bs*heads, d, H, W]
        v = per_level[level].flatten(2).transpose(1, 2).reshape(bs * num_heads, head_dims, h, w)
        # [bs, nq, heads, points, 2] -> [bs*heads, nq, points, 2]
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False))
    # [bs*heads, d, nq, levels*points] weighted by [bs*heads, 1, nq, levels*points]
    weights = attention_weights.transpose(1, 2).reshape(bs * num_heads, 1, num_queries,
                                                        num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(bs, num_heads * head_dims, num_queries).transpose(1, 2).contiguous()


def multi_scale_deformable_attn(value: Tensor,
                                spatial_shapes: Tensor,
                                level_start_index: Tensor,
                                sampling_locations: Tensor,
                                attention_weights: Tensor,
                                im2col_step: int = 64) -> Tensor:
    """Multi-scale deformable attention on any device (shapes in the module docstring).

    ``im2col_step`` is accepted for mmcv's signature; backends that batch differently ignore it.
    """
    return multi_scale_deformable_attn_torch(value, spatial_shapes, level_start_index,
                                             sampling_locations, attention_weights)
