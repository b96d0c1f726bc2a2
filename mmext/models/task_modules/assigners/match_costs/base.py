"""Padded batches of predictions/targets and the base class of batch-aware match costs.

mmdet's match costs see one image at a time, so a batch of ``B`` images costs ``B`` times the
small-tensor dispatch overhead of every term.  Here a term computes ``[B, Q, G_max]`` for the
whole batch from zero-padded tensors (:class:`MatchBatch`); padded columns hold finite garbage
that the solver never reads.  The per-image ``__call__`` of mmdet's interface is kept (a batch
of one), so a term can still be used wherever mmdet uses its own.
"""
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

__all__ = ['MatchBatch', 'BatchedMatchCost']


def _field(insts: Sequence[InstanceData], key: str) -> Optional[List[Tensor]]:
    if not all(key in inst for inst in insts):
        return None
    return [get_box_tensor(inst.get(key)) if key == 'bboxes' else inst.get(key) for inst in insts]


def _pad(tensors: Optional[List[Tensor]], flatten: bool = False) -> Optional[Tensor]:
    if tensors is None:
        return None
    if flatten:  # masks: (n, h, w) or (n, l) -> (n, h*w)
        tensors = [t.flatten(1) if t.dim() > 1 else t.reshape(t.shape[0], -1) for t in tensors]
    if all(t.shape == tensors[0].shape for t in tensors):  # e.g. the queries: stack is cheaper
        return torch.stack(tensors)
    return pad_sequence(tensors, batch_first=True)


@dataclass
class MatchBatch:
    """Zero-padded predictions and targets of ``B`` images.

    Shapes: ``pred_scores [B, Q, C]``, ``pred_bboxes [B, Q, 4]`` (xyxy, pixels),
    ``pred_masks [B, Q, P]``; ``gt_labels [B, G]``, ``gt_bboxes [B, G, 4]``,
    ``gt_masks [B, G, P]``; ``img_hw [B, 2]``; ``num_preds``/``num_gts`` ``[B]`` long.
    A field is ``None`` when some image lacks it.  ``pred_instances``, ``gt_instances`` and
    ``img_metas`` keep the per-image inputs, for terms that only work image by image.
    """
    num_preds: Tensor
    num_gts: Tensor
    gt_labels: Optional[Tensor] = None
    gt_bboxes: Optional[Tensor] = None
    gt_masks: Optional[Tensor] = None
    pred_scores: Optional[Tensor] = None
    pred_bboxes: Optional[Tensor] = None
    pred_masks: Optional[Tensor] = None
    img_hw: Optional[Tensor] = None
    pred_instances: Optional[List[InstanceData]] = None
    gt_instances: Optional[List[InstanceData]] = None
    img_metas: Optional[List[Optional[Dict[str, Any]]]] = None

    @classmethod
    def from_instances(
            cls,
            pred_instances: Sequence[InstanceData],
            gt_instances: Sequence[InstanceData],
            img_metas: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> 'MatchBatch':
        preds, gts = list(pred_instances), list(gt_instances)
        if len(preds) != len(gts):
            raise ValueError(f'{len(preds)} prediction sets but {len(gts)} target sets')
        labels = _field(gts, 'labels')
        device = labels[0].device if labels else torch.device('cpu')
        img_hw = None
        if img_metas is not None and all(m is not None and 'img_shape' in m for m in img_metas):
            img_hw = torch.tensor([list(m['img_shape'][:2]) for m in img_metas],
                                  dtype=torch.float32,
                                  device=device)
        pad_box = _field(gts, 'bboxes')
        return cls(
            num_preds=torch.tensor([len(p) for p in preds], dtype=torch.long, device=device),
            num_gts=torch.tensor([len(g) for g in gts], dtype=torch.long, device=device),
            gt_labels=_pad(labels),
            gt_bboxes=_pad(pad_box),
            gt_masks=_pad(_field(gts, 'masks'), flatten=True),
            pred_scores=_pad(_field(preds, 'scores')),
            pred_bboxes=_pad(_field(preds, 'bboxes')),
            pred_masks=_pad(_field(preds, 'masks'), flatten=True),
            img_hw=img_hw,
            pred_instances=preds,
            gt_instances=gts,
            img_metas=list(img_metas) if img_metas is not None else [None] * len(preds))

    def require(self, *names: str) -> List[Tensor]:
        """The named fields, or a ``KeyError`` that says which inputs are missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise KeyError(f'match cost needs {missing}; give every image those fields '
                           '(pred_instances.scores/bboxes/masks, gt_instances.labels/bboxes/'
                           "masks, img_meta['img_shape'])")
        return [getattr(self, n) for n in names]


class BatchedMatchCost(BaseMatchCost, metaclass=ABCMeta):
    """A match cost that computes ``[B, Q, G_max]`` for a :class:`MatchBatch` in one go.

    Subclasses implement :meth:`batch_cost` (unweighted); ``weight`` is applied here.
    """

    def __init__(self, weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)

    @abstractmethod
    def batch_cost(self, batch: MatchBatch) -> Tensor:
        """The unweighted ``[B, Q_max, G_max]`` cost of every (query, target) pair."""

    def weighted_batch_cost(self, batch: MatchBatch) -> Tensor:
        cost = self.batch_cost(batch)  # always a fresh tensor, so scale it in place
        return cost if self.weight == 1 else cost.mul_(self.weight)

    @torch.no_grad()  # matching is not differentiated; the terms also update in place
    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """mmdet's per-image interface: ``[num_preds, num_gts]`` weighted costs."""
        batch = MatchBatch.from_instances([pred_instances], [gt_instances], [img_meta])
        return self.weighted_batch_cost(batch)[0]

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{type(self).__name__}({args})'
