"""Fused pairwise match costs: one pass per ``[B, Q, G]`` cost block on the CPU.

The kernels (``csrc/pytorch/cpu/match_cost_cpu.cpp``) compute what the torch expressions of
mmext's match-cost terms compute, in the same order of operations, without the ~20 temporary
``[B, Q, G]`` tensors those expressions make.  The terms call them when
:func:`fused_match_costs_usable` says so and fall back to torch otherwise (no compiled
extension, other devices or dtypes, gradients requested, or fusion switched off).
"""
import contextlib
import os
from typing import Iterator

import torch
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['IOU_MODES', 'fused_match_costs', 'fused_match_costs_usable', 'pairwise_box_iou',
           'pairwise_box_l1']

IOU_MODES = {'iou': 0, 'iof': 1, 'giou': 2}
_FUNCS = ('pairwise_box_l1', 'pairwise_box_iou')
_enabled = os.getenv('MMEXT_DISABLE_FUSED_MATCH_COSTS', '0') != '1'


@contextlib.contextmanager
def fused_match_costs(enabled: bool) -> Iterator[None]:
    """Switch the fused kernels on or off inside a ``with`` block (tests, benchmarks)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def fused_match_costs_usable(*tensors: Tensor) -> bool:
    """Whether the fused kernels can replace the torch expressions for these inputs."""
    if not _enabled or not ext_available('_ext', _FUNCS):
        return False
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return not grad and all(
        t.device.type == 'cpu' and t.dtype in (torch.float32, torch.float64)
        for t in tensors)


def _ext():
    return load_ext('_ext', _FUNCS)


def pairwise_box_l1(pred: Tensor, gt: Tensor, scale: float = 1.) -> Tensor:
    """``scale * sum_k |pred[b, q, k] - gt[b, g, k]|`` for ``[B, Q, 4]``, ``[B, G, 4]``."""
    return _ext().pairwise_box_l1(pred, gt, scale)


def pairwise_box_iou(pred: Tensor, gt: Tensor, mode: str = 'giou', eps: float = 1e-6,
                     scale: float = 1.) -> Tensor:
    """``scale * IoU`` (``mode`` 'iou', 'iof' or 'giou') of every pair of xyxy boxes."""
    return _ext().pairwise_box_iou(pred, gt, IOU_MODES[mode], eps, scale)

