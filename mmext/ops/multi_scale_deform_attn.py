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

:func:`multi_scale_deformable_attn` checks its inputs and picks the backend from them: mmext's
compiled kernels (``csrc/pytorch/{cpu,cuda}/ms_deform_attn*``) for CPU float32/float64 and CUDA
float32/float64/float16/bfloat16 when ``mmext._ext`` is built, current and has them; otherwise
the plain-torch :func:`multi_scale_deformable_attn_torch`, the reference semantics every backend
must equal.  The CPU backward is deterministic (bit-identical for any thread count); the CUDA
backward accumulates ``grad_value`` with atomics unless
``torch.are_deterministic_algorithms_enabled()``, which selects a slower atomic-free kernel.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['multi_scale_deformable_attn', 'multi_scale_deformable_attn_torch']

_FUNCS = ('ms_deform_attn_fwd', 'ms_deform_attn_bwd')
_DTYPES = dict(
    cpu=(torch.float32, torch.float64),
    cuda=(torch.float32, torch.float64, torch.float16, torch.bfloat16))


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


def _kernel_usable(value: Tensor) -> bool:
    """Whether the compiled kernels take inputs on ``value``'s device and dtype."""
    if value.dtype not in _DTYPES.get(value.device.type, ()):
        return False
    if not ext_available('_ext', _FUNCS):
        return False
    return value.device.type == 'cpu' or bool(load_ext('_ext', _FUNCS).with_cuda)


def _check_inputs(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                  sampling_locations: Tensor, attention_weights: Tensor) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first inconsistency among the inputs."""
    name = 'multi_scale_deformable_attn'
    if value.dim() != 4:
        raise ValueError(f'{name}: value must be [bs, num_keys, num_heads, head_dims], got '
                         f'shape {tuple(value.shape)}')
    bs, num_keys, num_heads, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f'{name}: spatial_shapes must be [num_levels, 2] (H, W per level), got '
                         f'shape {tuple(spatial_shapes.shape)}')
    num_levels = spatial_shapes.shape[0]
    if level_start_index.dim() != 1 or level_start_index.shape[0] != num_levels:
        raise ValueError(f'{name}: level_start_index must be [num_levels] = [{num_levels}], got '
                         f'shape {tuple(level_start_index.shape)}')
    loc, attn = sampling_locations, attention_weights
    if (loc.dim() != 6 or loc.shape[0] != bs or loc.shape[2] != num_heads
            or loc.shape[3] != num_levels or loc.shape[5] != 2):
        raise ValueError(f'{name}: sampling_locations must be [bs, num_queries, num_heads, '
                         f'num_levels, num_points, 2] = [{bs}, *, {num_heads}, {num_levels}, *, 2]'
                         f', got shape {tuple(loc.shape)}')
    if attn.shape != loc.shape[:5]:
        raise ValueError(f'{name}: attention_weights must be [bs, num_queries, num_heads, '
                         f'num_levels, num_points] = {tuple(loc.shape[:5])}, got shape '
                         f'{tuple(attn.shape)}')
    for t, what in ((spatial_shapes, 'spatial_shapes'), (level_start_index, 'level_start_index')):
        if t.dtype != torch.long:
            raise TypeError(f'{name}: {what} must be int64 (torch.long), got {t.dtype}')
    if not value.is_floating_point():
        raise TypeError(f'{name}: value must be a floating-point tensor, got {value.dtype}')
    for t, what in ((loc, 'sampling_locations'), (attn, 'attention_weights')):
        if t.dtype != value.dtype:
            raise TypeError(f'{name}: {what} has dtype {t.dtype}, value has {value.dtype}; '
                            'they must match')
    for t, what in ((spatial_shapes, 'spatial_shapes'), (level_start_index, 'level_start_index'),
                    (loc, 'sampling_locations'), (attn, 'attention_weights')):
        if t.device != value.device:
            raise ValueError(f'{name}: {what} is on {t.device}, value on {value.device}; all '
                             'inputs must be on one device')
    # One host read of the level table (a synchronisation on CUDA, as in the torch reference).
    table: List[List[int]] = torch.cat([spatial_shapes, level_start_index[:, None]], 1).tolist()
    start = 0
    for level, (h, w, given) in enumerate(table):
        if h <= 0 or w <= 0:
            raise ValueError(f'{name}: spatial_shapes[{level}] = ({h}, {w}) is not a positive '
                             '(H, W)')
        if given != start:
            raise ValueError(f'{name}: level_start_index[{level}] = {given}, but the levels '
                             f'before it hold {start} keys (spatial_shapes {_table_hw(table)})')
        start += h * w
    if start != num_keys:
        raise ValueError(f'{name}: value has {num_keys} keys (dim 1) but spatial_shapes '
                         f'{_table_hw(table)} sum to {start} = sum(H * W)')


def _table_hw(table: List[List[int]]) -> List[Tuple[int, int]]:
    return [(h, w) for h, w, _ in table]


class _MSDeformAttnFunction(torch.autograd.Function):
    """Autograd for the compiled kernels (inputs checked and contiguous)."""

    @staticmethod
    def forward(ctx, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)
        return load_ext('_ext', _FUNCS).ms_deform_attn_fwd(value, spatial_shapes, level_start_index,
                                                           sampling_locations, attention_weights)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        value, shapes, starts, loc, attn = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = load_ext('_ext', _FUNCS).ms_deform_attn_bwd(
            grad_output.contiguous(), value, shapes, starts, loc, attn,
            torch.are_deterministic_algorithms_enabled())
        needs = ctx.needs_input_grad
        return (grad_value if needs[0] else None, None, None, grad_loc if needs[3] else None,
                grad_attn if needs[4] else None)


def multi_scale_deformable_attn(value: Tensor,
                                spatial_shapes: Tensor,
                                level_start_index: Tensor,
                                sampling_locations: Tensor,
                                attention_weights: Tensor,
                                im2col_step: int = 64) -> Tensor:
    """Multi-scale deformable attention on any device (shapes in the module docstring).

    Returns ``[bs, num_queries, num_heads * head_dims]``.  Inconsistent inputs (shapes, the level
    table against ``value``'s length, dtypes, devices) raise an error that names them.
    ``im2col_step`` is accepted for mmcv's signature; backends that batch differently ignore it.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if not _kernel_usable(value):
        return multi_scale_deformable_attn_torch(value, spatial_shapes, level_start_index,
                                                 sampling_locations, attention_weights)
    args = (value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
            sampling_locations.contiguous(), attention_weights.contiguous())
    if torch.is_grad_enabled() and any(
            t.requires_grad for t in (value, sampling_locations, attention_weights)):
        return _MSDeformAttnFunction.apply(*args)
    return load_ext('_ext', _FUNCS).ms_deform_attn_fwd(*args)  # inference: no autograd node
