"""The multi-scale deformable attention module of Deformable DETR.

Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., ICLR 2021,
https://arxiv.org/abs/2010.04159), Sec. 4.1, eq. (3).  A query ``z_q`` with a normalised
reference point ``p̂_q`` attends, in each head ``m``, to only ``K`` sampled points on each of the
``L`` feature levels ``x^l``:

    MSDeformAttn(z_q, p̂_q, {x^l}) =
        Σ_m W_m [ Σ_l Σ_k A_mlqk · W'_m x^l(φ_l(p̂_q) + Δp_mlqk) ],

where the offsets ``Δp_mlqk`` and the weights ``A_mlqk`` (softmax over the ``L·K`` samples of a
head) are linear projections of ``z_q`` (plus its positional embedding), ``W'_m`` is the value
projection ``value_proj`` and ``W_m`` the output projection ``output_proj``; ``x^l(·)`` is read by
bilinear interpolation.  Offsets are in pixels of each level: a 2-d reference point ``(x, y)`` gets
``Δp / (W_l, H_l)``.  With 4-d reference boxes ``(cx, cy, w, h)`` (iterative refinement and the
two-stage variant, appendix A.4) the offsets are relative to the box: ``Δp / K · (w, h) / 2``.

The sampling itself is :func:`mmext.ops.multi_scale_deformable_attn`, which picks the kernel for
the device.  Constructor arguments, parameter names (``sampling_offsets``, ``attention_weights``,
``value_proj``, ``output_proj``), initialisation and the forward signature are those of mmcv's
``MultiScaleDeformableAttention`` (mmcv 2.1), so mmdet's Deformable DETR, DINO and Mask2Former
checkpoints load unchanged.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmext.ops.multi_scale_deform_attn import multi_scale_deformable_attn
from mmext.registry import MODELS

__all__ = ['MultiScaleDeformableAttention']


@MODELS.register_module()
class MultiScaleDeformableAttention(BaseModule):
    """Multi-scale deformable attention (Zhu et al., 2021, eq. 3) with a residual connection.

    ``out = identity + dropout(output_proj(MSDeformAttn(query + query_pos, value)))``.

    Args:
        embed_dims: Channels ``C`` of queries and values. Defaults to 256.
        num_heads: Attention heads ``M``; ``C`` must be divisible by it. Defaults to 8.
        num_levels: Feature levels ``L``. Defaults to 4.
        num_points: Sampling points ``K`` per head and level. Defaults to 4.
        im2col_step: Images per step of the compiled kernel (passed to the op). Defaults to 64.
        dropout: Dropout on the attention output before the residual add. Defaults to 0.1.
        batch_first: Tensors are ``[B, N, C]`` if True, ``[N, B, C]`` otherwise (mmcv's
            default). Defaults to False.
        norm_cfg: Unused; accepted for mmcv's signature.
        init_cfg: Initialisation config.
        value_proj_ratio: Width of the projected values relative to ``embed_dims``.
            Defaults to 1.0.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 im2col_step: int = 64,
                 dropout: float = 0.1,
                 batch_first: bool = False,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 value_proj_ratio: float = 1.0) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims must be divisible by num_heads, '
                             f'but got {embed_dims} and {num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.im2col_step = im2col_step
        self.batch_first = batch_first
        self.norm_cfg = norm_cfg
        self.dropout = nn.Dropout(dropout)
        # one (x, y) offset and one weight per (head, level, point)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        value_dims = int(embed_dims * value_proj_ratio)
        if value_dims % num_heads != 0:
            raise ValueError(f'embed_dims * value_proj_ratio ({value_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Deformable DETR's initialisation (official code, ``_reset_parameters``).

        Offsets start from a fixed grid: head ``m`` points in direction ``2πm / M`` (scaled so
        its larger coordinate is 1), point ``k`` at distance ``k + 1`` pixels, on every level; the
        attention weights start uniform (zero logits); value/output projections are
        Xavier-uniform with zero bias.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(
            self.num_heads, dtype=torch.float32,
            device=self.sampling_offsets.weight.device) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        # [M, L, K, 2]: the k-th point of every level lies k + 1 steps along its head's direction
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32, device=thetas.device)
        grid = directions[:, None, None, :] * steps[None, None, :, None]
        grid = grid.expand(-1, self.num_levels, -1, -1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)
        self._is_init = True

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Attend from ``query`` to the flattened multi-level ``value``.

        Shapes below are batch-first; with ``batch_first=False`` the first two dimensions of
        ``query``, ``value``, ``identity``, ``query_pos`` and the output are swapped.

        Args:
            query: ``[B, Nq, C]`` queries.
            key: Unused (the sampled values are the keys); accepted for mmcv's signature.
            value: ``[B, Nv, C]`` the levels' features flattened and concatenated,
                ``Nv = Σ_l H_l W_l``. Defaults to ``query`` (encoder self-attention).
            identity: ``[B, Nq, C]`` added to the output. Defaults to ``query``.
            query_pos: ``[B, Nq, C]`` positional embedding added to ``query`` (not to
                ``identity``) before projecting offsets and weights.
            key_padding_mask: ``[B, Nv]``, True at padded value cells (they read as zero).
            reference_points: ``[B, Nq, L, 2]`` points ``(x, y)`` or ``[B, Nq, L, 4]`` boxes
                ``(cx, cy, w, h)``, normalised to ``[0, 1]`` over each level (padding included).
            spatial_shapes: ``[L, 2]`` long, ``(H_l, W_l)`` of each level.
            level_start_index: ``[L]`` long, offset of each level in ``Nv``; computed from
                ``spatial_shapes`` when None.

        Returns:
            ``[B, Nq, C]`` (``[Nq, B, C]`` if not batch-first).
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        if reference_points is None or spatial_shapes is None:
            raise ValueError('MultiScaleDeformableAttention needs reference_points and '
                             'spatial_shapes')
        bs, num_queries, _ = query.shape
        num_values = value.size(1)
        if int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum()) != num_values:
            raise ValueError(f'spatial_shapes {spatial_shapes.tolist()} cover '
                             f'{int(spatial_shapes.prod(1).sum())} cells, value has {num_values}')
        if level_start_index is None:
            level_start_index = torch.cat(
                (spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))

        # W'_m x: [B, Nv, M, C'/M], padded cells zeroed so that samples near them fade out
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask.bool()[..., None], 0.0)
        value = value.view(bs, num_values, self.num_heads, -1)

        # Δp_mlqk: [B, Nq, M, L, K, 2] and A_mlqk: softmax over the L*K samples of each head
        offsets = self.sampling_offsets(query).view(bs, num_queries, self.num_heads,
                                                    self.num_levels, self.num_points, 2)
        weights = self.attention_weights(query).view(bs, num_queries, self.num_heads,
                                                     self.num_levels * self.num_points)
        weights = weights.softmax(-1).view(bs, num_queries, self.num_heads, self.num_levels,
                                           self.num_points)
        locations = self.sampling_locations(reference_points, offsets, spatial_shapes)

        out = multi_scale_deformable_attn(value, spatial_shapes, level_start_index, locations,
                                          weights, self.im2col_step)
        out = self.output_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return self.dropout(out) + identity

    def sampling_locations(self, reference_points: Tensor, offsets: Tensor,
                           spatial_shapes: Tensor) -> Tensor:
        """``φ_l(p̂_q) + Δp_mlqk`` normalised: ``[B, Nq, M, L, K, 2]`` ``(x, y)`` in ``[0, 1]``.

        Args:
            reference_points: ``[B, Nq, L, 2]`` points or ``[B, Nq, L, 4]`` boxes.
            offsets: ``[B, Nq, M, L, K, 2]`` raw offsets.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
        """
        ref = reference_points[:, :, None, :, None, :]  # broadcast over heads and points
        if reference_points.size(-1) == 2:
            # pixel offsets on each level: divide by (W_l, H_l)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            return ref + offsets / normalizer[None, None, None, :, None, :]
        if reference_points.size(-1) == 4:
            # box-relative offsets: K points span half the box size in each direction
            return ref[..., :2] + offsets / self.num_points * ref[..., 2:] * 0.5
        raise ValueError('reference_points must end in 2 (x, y) or 4 (cx, cy, w, h) '
                         f'coordinates, got {reference_points.size(-1)}')
