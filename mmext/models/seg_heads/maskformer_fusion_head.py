"""Panoptic inference of MaskFormer (Cheng et al., NeurIPS 2021, Sec. 3.4 and appendix A.1).

From the last decoder layer's ``N`` (class logits, mask logits) pairs of one image:

1. keep the queries whose most likely class is not ∅ and whose probability exceeds
   ``object_mask_thr`` (0.8);
2. give every pixel to the kept query with the largest ``p_i * sigmoid(m_i)[h, w]``;
3. drop a query when the pixels it won cover less than ``iou_thr`` (0.8) of its own binary mask
   (``sigmoid(m_i) >= 0.5``): a mostly occluded segment is not trusted;
4. stuff queries write their class id, thing queries ``class + k * INSTANCE_OFFSET`` with a
   running instance number ``k`` (mmdet's panoptic encoding); unassigned pixels are
   ``num_classes`` (VOID).

Steps 2-4 are vectorised over the kept queries (the segments are disjoint, so the result equals
the sequential per-query loop of mmdet's ``MaskFormerFusionHead``).  Instance inference (top-k
class scores x mask scores, boxes from masks) is available for mmdet's ``instance_on``.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures.mask import mask2bbox
from mmengine.model import BaseModule
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from mmext.registry import MODELS

__all__ = ['MaskFormerFusionHead']


@MODELS.register_module()
class MaskFormerFusionHead(BaseModule):
    """Panoptic (and instance) post-processing of MaskFormer outputs for mmdet's MaskFormer.

    Args:
        num_things_classes: Thing classes (ids ``[0, num_things)``).
        num_stuff_classes: Stuff classes (ids ``[num_things, num_classes)``).
        test_cfg: ``panoptic_on`` (True), ``instance_on`` (False), ``semantic_on`` (False),
            ``object_mask_thr`` (0.8), ``iou_thr`` (0.8), ``filter_low_score`` (False),
            ``max_per_image`` (100, instances).
    """

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 test_cfg: Optional[dict] = None,
                 loss_panoptic: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if loss_panoptic is not None:
            raise ValueError('MaskFormerFusionHead has no loss; loss_panoptic must be None')
        self.loss_panoptic = None  # mmdet's attribute; with_loss reads it
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.test_cfg = dict(test_cfg or {})

    @property
    def with_loss(self) -> bool:
        """Whether the head has a loss (mmdet's ``BasePanopticFusionHead`` API): never."""
        return self.loss_panoptic is not None

    def loss(self, **kwargs) -> dict:
        """Nothing to learn."""
        return dict()

    def panoptic_postprocess(self, mask_cls: Tensor, mask_pred: Tensor) -> PixelData:
        """``mask_cls [N, K+1]``, ``mask_pred [N, H, W]`` logits -> ``sem_seg [1, H, W]`` int32
        panoptic ids."""
        object_mask_thr = self.test_cfg.get('object_mask_thr', 0.8)
        iou_thr = self.test_cfg.get('iou_thr', 0.8)
        filter_low_score = self.test_cfg.get('filter_low_score', False)
        if mask_cls.shape[-1] != self.num_classes + 1:
            raise ValueError(f'MaskFormerFusionHead: class logits have {mask_cls.shape[-1]} '
                             f'channels, expected num_classes + 1 = {self.num_classes + 1}')
        scores, labels = mask_cls.softmax(-1).max(-1)
        keep = (labels != self.num_classes) & (scores > object_mask_thr)
        masks = mask_pred[keep].sigmoid()
        scores, labels = scores[keep], labels[keep]
        h, w = mask_pred.shape[-2:]
        pan = torch.full((h, w), self.num_classes, dtype=torch.int32, device=mask_pred.device)
        if masks.shape[0] == 0:
            return PixelData(sem_seg=pan[None])
        winner = (scores[:, None, None] * masks).argmax(0)  # [H, W] index among kept queries
        won = winner[None] == torch.arange(masks.shape[0], device=masks.device)[:, None, None]
        area = won.flatten(1).sum(1)
        own = masks >= 0.5
        own_area = own.flatten(1).sum(1)
        ratio = area.double() / own_area.clamp(min=1).double()  # as mmdet: area / own_area < thr
        ok = (area > 0) & (own_area > 0) & (ratio >= iou_thr)
        if filter_low_score:
            won = won & own
        thing = labels < self.num_things_classes
        inst = torch.cumsum((ok & thing).long(), 0)  # 1-based instance number of kept things
        ids = torch.where(thing, labels + inst * INSTANCE_OFFSET, labels).to(torch.int32)
        # segments are disjoint: each pixel takes the id of the (at most one) kept query it won
        sel = won & ok[:, None, None]
        covered = sel.any(0)
        seg_id = ids[sel.to(torch.uint8).argmax(0)]
        pan = torch.where(covered, seg_id, pan)
        return PixelData(sem_seg=pan[None])

    def instance_postprocess(self, mask_cls: Tensor, mask_pred: Tensor) -> InstanceData:
        """Top ``max_per_image`` (query, thing class) pairs, scored by class probability times
        the mean foreground mask probability; boxes from the binary masks."""
        max_per_image = self.test_cfg.get('max_per_image', 100)
        scores = mask_cls.softmax(-1)[:, :-1]
        top_scores, top = scores.flatten().topk(min(max_per_image, scores.numel()), sorted=False)
        labels = top % self.num_classes
        query = torch.div(top, self.num_classes, rounding_mode='floor')
        is_thing = labels < self.num_things_classes
        top_scores, labels, masks = top_scores[is_thing], labels[is_thing], mask_pred[query][
            is_thing]
        binary = masks > 0
        fg = binary.flatten(1).float()
        mask_score = (masks.sigmoid().flatten(1) * fg).sum(1) / (fg.sum(1) + 1e-6)
        return InstanceData(
            bboxes=mask2bbox(binary), labels=labels, scores=top_scores * mask_score, masks=binary)

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples: List,
                rescale: bool = False,
                **kwargs) -> List[dict]:
        """Per image: crop the padding, optionally resize to ``ori_shape``, then post-process.

        Returns a list of dicts with ``pan_results`` (:class:`PixelData`) and/or
        ``ins_results`` (:class:`InstanceData`), as mmdet's ``MaskFormer`` expects.
        """
        if self.test_cfg.get('semantic_on', False):
            raise ValueError('MaskFormerFusionHead: semantic_on is not supported (mmdet does not '
                             'evaluate it); use the head in an mmseg EncoderDecoder instead')
        results = []
        for cls, pred, ds in zip(mask_cls_results, mask_pred_results, batch_data_samples):
            meta = ds.metainfo
            h, w = meta['img_shape'][:2]
            pred = pred[:, :h, :w]
            if rescale:
                oh, ow = meta['ori_shape'][:2]
                pred = F.interpolate(
                    pred[:, None], size=(oh, ow), mode='bilinear', align_corners=False)[:, 0]
            out = {}
            if self.test_cfg.get('panoptic_on', True):
                out['pan_results'] = self.panoptic_postprocess(cls, pred)
            if self.test_cfg.get('instance_on', False):
                out['ins_results'] = self.instance_postprocess(cls, pred)
            results.append(out)
        return results
