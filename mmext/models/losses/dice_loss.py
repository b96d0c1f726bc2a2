"""Dice loss (Milletari et al., "V-Net", 3DV 2016, eq. 1), usable from mmdet and mmseg configs.

For a prediction ``p`` in ``[0, 1]`` and a target ``t`` in ``[0, 1]`` flattened over the pixels
(and, for multi-class inputs, over the classes) of one sample, the loss is ``1 - D`` with

    V-Net form (``naive_dice=False``):  D = 2 sum(p t) / ((sum(p^2) + eps) + (sum(t^2) + eps))
    naive form (``naive_dice=True``):   D = (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)

(the naive form is the one MaskFormer, Cheng et al. NeurIPS 2021, trains its masks with).

Two target layouts are accepted:

* *binary* (mmdet): ``target`` has ``pred``'s shape ``(N, ...)`` with values in ``[0, 1]``:
  binary masks, or soft ones (e.g. resized masks; mmdet takes them too); values outside
  ``[0, 1]`` other than ``ignore_index`` raise.  The activation is a sigmoid (or none): a softmax
  over dim 1 of this layout would run over a spatial axis, so it raises ``NotImplementedError``
  as mmdet's DiceLoss does;
* *label map* (mmseg): ``pred`` is ``(N, C, ...)`` and ``target`` ``(N, ...)`` holds class indices,
  one-hot encoded here.

``ignore_index`` marks ignored **pixels** (target value ``ignore_index``): they are dropped from
every sum, so neither the prediction nor the target there changes the loss.  A sample whose pixels
are all ignored contributes 0 and is not counted by ``reduction='mean'``.  (mmseg 1.2's DiceLoss
instead drops the *channel* numbered ``ignore_index`` and keeps ignored pixels as all-zero
targets, so its prediction there still pulls the loss.)
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmext.registry import MODELS

__all__ = ['DiceLoss', 'dice_loss']

REDUCTIONS = (None, 'none', 'mean', 'sum')


def dice_loss(pred: Tensor,
              target: Tensor,
              valid: Optional[Tensor] = None,
              weight: Optional[Tensor] = None,
              eps: float = 1e-3,
              reduction: str = 'mean',
              naive_dice: bool = False,
              avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
    """Dice loss of activated predictions and binary targets of the same shape ``(N, ...)``.

    Args:
        pred: Probabilities ``(N, ...)``.
        target: Binary targets, same shape.
        valid: Optional bool mask, same shape; False entries are left out of every sum.
        weight: Optional per-sample weights ``(N,)``.
        eps: Smoothing term (see the module docstring for where it enters).
        reduction: ``'none'``, ``'mean'`` or ``'sum'`` over the ``N`` samples.
        naive_dice: First powers in the denominator (True) or squares (False, V-Net).
        avg_factor: Divide the sum by this instead of the number of samples (``'mean'`` only).
    """
    p = pred.flatten(1)
    t = target.flatten(1).to(p.dtype)
    if valid is not None:
        v = valid.flatten(1).to(p.dtype)
        p, t = p * v, t * v  # ignored entries drop out of every sum below
    inter = (p * t).sum(1)
    if naive_dice:
        score = (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)
    else:
        score = 2 * inter / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)
    loss = 1 - score
    count = None
    if valid is not None:
        has_pixels = valid.flatten(1).any(1)
        loss = torch.where(has_pixels, loss, loss.new_zeros(()))  # all ignored -> 0, not 1 - D
        count = has_pixels.sum()
    if weight is not None:
        if weight.shape != loss.shape:
            raise ValueError(f'DiceLoss: weight must have shape {tuple(loss.shape)} (one per '
                             f'sample), got {tuple(weight.shape)}')
        loss = loss * weight
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        if avg_factor is not None:
            raise ValueError('DiceLoss: avg_factor can not be used with reduction="sum"')
        return loss.sum()
    if avg_factor is not None:  # mmdet's weight_reduce_loss: sum / (avg_factor + float eps)
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if count is None:
        return loss.mean()
    return loss.sum() / count.clamp(min=1).to(loss.dtype)


@MODELS.register_module()
class DiceLoss(nn.Module):
    """Dice loss with mmdet's and mmseg's config keys.

    Args:
        use_sigmoid: Activate with a sigmoid (True) or a softmax over dim 1 (False; label-map
            layout only).
        activate: Apply the activation; False when ``pred`` already holds probabilities.
        reduction: ``'none'``, ``'mean'`` or ``'sum'`` over samples. Defaults to ``'mean'``.
        naive_dice: Naive (first-power) denominator instead of V-Net's squares.
        loss_weight: Multiplier of the loss.
        eps: Smoothing term. Defaults to 1e-3.
        ignore_index: Target value of ignored pixels (mmseg key), or None. Defaults to 255.
        loss_name: Name of the loss item in mmseg's loss dict. Defaults to ``'loss_dice'``.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 activate: bool = True,
                 reduction: str = 'mean',
                 naive_dice: bool = False,
                 loss_weight: float = 1.0,
                 eps: float = 1e-3,
                 ignore_index: Optional[int] = 255,
                 loss_name: str = 'loss_dice') -> None:
        super().__init__()
        if reduction not in REDUCTIONS[1:]:
            raise ValueError(f'DiceLoss: reduction must be one of {REDUCTIONS[1:]}, '
                             f'got {reduction!r}')
        if eps < 0:
            raise ValueError(f'DiceLoss: eps must be >= 0, got {eps}')
        self.use_sigmoid = use_sigmoid
        self.activate = activate
        self.reduction = reduction
        self.naive_dice = naive_dice
        self.loss_weight = loss_weight
        self.eps = eps
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Key of this loss in mmseg's loss dict (must start with ``loss_`` to be optimised)."""
        return self._loss_name

    def _activate(self, pred: Tensor) -> Tensor:
        if not self.activate:
            return pred
        if self.use_sigmoid:
            return pred.sigmoid()
        if pred.dim() < 2 or pred.shape[1] < 2:
            raise ValueError('DiceLoss(use_sigmoid=False) takes a softmax over dim 1 and needs '
                             f'(N, C>=2, ...) logits, got shape {tuple(pred.shape)}')
        return pred.softmax(dim=1)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """Loss of ``pred`` logits (or probabilities with ``activate=False``) against ``target``.

        Args:
            pred: ``(N, ...)`` with a ``target`` of the same shape (sigmoid or no activation),
                or ``(N, C, ...)`` with a ``(N, ...)`` integer label map.
            target: Masks with values in ``[0, 1]`` (binary or soft) or class indices;
                ``ignore_index`` marks ignored pixels.
            weight: Per-sample weights ``(N,)``.
            avg_factor: Divisor of the summed loss (mean reduction).
            reduction_override: Overrides ``reduction`` for this call.
            ignore_index: Overrides the configured ``ignore_index`` for this call (mmseg's
                decode heads pass theirs).
        """
        if reduction_override not in REDUCTIONS:
            raise ValueError(f'DiceLoss: reduction_override must be one of {REDUCTIONS}, '
                             f'got {reduction_override!r}')
        reduction = reduction_override or self.reduction
        ignore = self.ignore_index if ignore_index is None else ignore_index
        if pred.dim() < 2:
            raise ValueError(f'DiceLoss: pred must be (N, ...) with N samples, got shape '
                             f'{tuple(pred.shape)}')
        if not torch.isfinite(pred).all():
            raise ValueError('DiceLoss: pred holds NaN or inf')
        if target.shape == pred.shape and self.activate and not self.use_sigmoid:
            raise NotImplementedError(
                f'DiceLoss(use_sigmoid=False) takes a softmax over dim 1, which needs the '
                f'label-map layout: (N, C, ...) logits with an (N, ...) integer target; a target '
                f'of pred\'s shape {tuple(pred.shape)} (mmdet\'s mask layout) needs '
                f'use_sigmoid=True or activate=False')
        probs = self._activate(pred)

        if target.shape == pred.shape:  # masks in [0, 1]
            valid = None if ignore is None else target != ignore
            if valid is not None and bool(valid.all()):
                valid = None  # nothing ignored: skip the masking passes
            onehot = target if valid is None else torch.where(valid, target, target.new_zeros(()))
            if (onehot < 0).any() or (onehot > 1).any():
                raise ValueError('DiceLoss: a target of pred\'s shape must hold binary or soft '
                                 'masks, values in [0, 1]'
                                 f'{"" if ignore is None else f" or ignore_index={ignore}"}; '
                                 f'got values in [{target.min().item()}, '
                                 f'{target.max().item()}]')
        elif target.dim() == pred.dim() - 1 and target.shape[0] == pred.shape[0] \
                and target.shape[1:] == pred.shape[2:]:  # label map -> one-hot on dim 1
            if target.is_floating_point():
                raise ValueError(f'DiceLoss: a label-map target must be integer, got '
                                 f'{target.dtype}')
            num_classes = pred.shape[1]
            valid_px = torch.ones_like(target, dtype=torch.bool) if ignore is None \
                else target != ignore
            labels = torch.where(valid_px, target, target.new_zeros(()))
            if (labels < 0).any() or (labels >= num_classes).any():
                raise ValueError(f'DiceLoss: label-map target values must lie in [0, '
                                 f'{num_classes}) or equal ignore_index={ignore}; got '
                                 f'[{target.min().item()}, {target.max().item()}]')
            onehot = F.one_hot(labels.long(), num_classes).movedim(-1, 1)
            valid = None if bool(valid_px.all()) else valid_px.unsqueeze(1).expand_as(onehot)
        else:
            raise ValueError(f'DiceLoss: target shape {tuple(target.shape)} fits neither pred '
                             f'shape {tuple(pred.shape)} (binary masks) nor (N, ...) of a '
                             '(N, C, ...) pred (label map)')
        loss = dice_loss(
            probs,
            onehot,
            valid,
            weight=weight,
            eps=self.eps,
            reduction=reduction,
            naive_dice=self.naive_dice,
            avg_factor=avg_factor)
        return self.loss_weight * loss
