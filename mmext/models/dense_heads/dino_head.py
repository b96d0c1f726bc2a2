"""DINO's head: Deformable DETR's per-layer branches plus the denoising and encoder losses.

DINO (Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes for End-to-End Object
Detection", ICLR 2023, https://arxiv.org/abs/2203.03605).  The decoder runs ``D`` contrastive
denoising queries (see :class:`~mmext.models.layers.CdnQueryGenerator`) in front of its ``Q``
matching queries, so every layer's outputs ``[L, B, D + Q, *]`` are split in two:

* the **matching part** ``[L, B, Q, *]`` gets DETR's Hungarian loss on every layer
  (``loss_*``, ``d{i}.loss_*``), matched by the assigner (mmext's batched
  :class:`~mmext.models.task_modules.HungarianAssigner` by default in mmext configs);
* the **denoising part** ``[L, B, D, *]`` needs no matching (DN-DETR, Li et al., CVPR 2022,
  Sec. 3.2): the positive query ``j`` of each group reconstructs ground truth ``j`` (class,
  L1 and GIoU terms), the negative one and the padding must predict "no object"
  (``dn_loss_*``, ``d{i}.dn_loss_*``).

The encoder's top-``Q`` proposals (mixed query selection, DINO Sec. 3.4) are trained like one more
decoder layer with the real class labels (``enc_loss_*``; Deformable DETR's two-stage variant uses
a single "object" class there instead).

Config keys, state-dict keys and loss names equal ``mmdet.models.dense_heads.DINOHead``
(mmdet 3.3.0).
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.losses import QualityFocalLoss
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from torch import Tensor

from mmext.registry import MODELS

from .deformable_detr_head import DeformableDETRHead
from .detr_head import DETRHead

DnMeta = Dict[str, int]


@MODELS.register_module()
class DINOHead(DeformableDETRHead):
    """Head of DINO (Zhang et al., 2023): Deformable DETR's head with denoising losses.

    Takes :class:`DeformableDETRHead`'s arguments (``num_classes``, ``embed_dims``,
    ``num_pred_layer`` = decoder layers + 1 for the encoder proposals, ``as_two_stage=True``,
    ``loss_cls``/``loss_bbox``/``loss_iou``, ``train_cfg``/``test_cfg``).
    """

    def loss(self, hidden_states: Tensor, references: List[Tensor], enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor, batch_data_samples: SampleList,
             dn_meta: Optional[DnMeta]) -> Dict[str, Tensor]:
        """Losses from the decoder outputs.

        Args:
            hidden_states: ``[L, B, D + Q, C]`` outputs of every decoder layer.
            references: ``L + 1`` reference boxes ``[B, D + Q, 4]`` (sigmoid ``cxcywh``): the
                initial ones and those each layer predicted.
            enc_outputs_class: ``[B, Q, K]`` class logits of the selected encoder proposals.
            enc_outputs_coord: ``[B, Q, 4]`` their boxes (normalised ``cxcywh``).
            batch_data_samples: Data samples with ``gt_instances`` and metainfo.
            dn_meta: ``dict(num_denoising_queries=D, num_denoising_groups=G)``, or None when
                the decoder ran no denoising queries.
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        cls_scores, bbox_preds = self(hidden_states, references)
        return self.loss_by_feat(cls_scores, bbox_preds, enc_outputs_class, enc_outputs_coord,
                                 batch_gt_instances, batch_img_metas, dn_meta)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     dn_meta: Optional[DnMeta],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Loss dict from ``[L, B, D + Q, *]`` outputs: the matching part's Hungarian losses
        (``loss_*``, ``d{i}.loss_*``), the encoder proposals' (``enc_loss_*``) and the denoising
        part's (``dn_loss_*``, ``d{i}.dn_loss_*``), in mmdet's order."""
        match_cls, match_bbox, dn_cls, dn_bbox = self.split_outputs(all_layers_cls_scores,
                                                                    all_layers_bbox_preds, dn_meta)
        # DETR's per-layer Hungarian losses; Deformable DETR's own override would add its
        # class-agnostic encoder loss, DINO's encoder loss keeps the classes
        losses = DETRHead.loss_by_feat(self, match_cls, match_bbox, batch_gt_instances,
                                       batch_img_metas, batch_gt_instances_ignore)
        if enc_cls_scores is not None:
            enc = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds, batch_gt_instances,
                                           batch_img_metas)
            for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), enc):
                losses[f'enc_{name}'] = value
        if dn_cls is not None:
            dn_losses = self.loss_dn(dn_cls, dn_bbox, batch_gt_instances, batch_img_metas, dn_meta)
            num_layers = len(dn_losses)
            for i in [num_layers - 1] + list(range(num_layers - 1)):  # last layer first
                prefix = '' if i == num_layers - 1 else f'd{i}.'
                for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), dn_losses[i]):
                    losses[f'{prefix}dn_{name}'] = value
        return losses

    @staticmethod
    def split_outputs(
            all_layers_cls_scores: Tensor, all_layers_bbox_preds: Tensor,
            dn_meta: Optional[DnMeta]) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """Split ``[L, B, D + Q, *]`` outputs into the matching part ``[L, B, Q, *]`` and the
        denoising part ``[L, B, D, *]`` (the first ``D`` queries; None without ``dn_meta``).

        Returns:
            ``(matching_cls, matching_bbox, denoising_cls, denoising_bbox)``.
        """
        if dn_meta is None:
            return all_layers_cls_scores, all_layers_bbox_preds, None, None
        num_dn = dn_meta['num_denoising_queries']
        return (all_layers_cls_scores[:, :, num_dn:], all_layers_bbox_preds[:, :, num_dn:],
                all_layers_cls_scores[:, :, :num_dn], all_layers_bbox_preds[:, :, :num_dn])

    def loss_dn(self, all_layers_denoising_cls_scores: Tensor,
                all_layers_denoising_bbox_preds: Tensor, batch_gt_instances: InstanceList,
                batch_img_metas: List[dict],
                dn_meta: DnMeta) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """``(loss_cls, loss_bbox, loss_iou)`` of each decoder layer's denoising outputs
        ``[L, B, D, *]``; the targets are the same for every layer and computed once."""
        targets = self.get_dn_targets(batch_gt_instances, batch_img_metas, dn_meta)
        losses = []
        for cls_scores, bbox_preds in zip(all_layers_denoising_cls_scores,
                                          all_layers_denoising_bbox_preds):
            losses.append(self._loss_dn_single(cls_scores, bbox_preds, batch_img_metas, *targets))
        return losses

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_img_metas: List[dict], labels: Tensor, label_weights: Tensor,
                        bbox_targets: Tensor, bbox_weights: Tensor, num_pos: int,
                        num_neg: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Denoising loss of one layer: ``dn_cls_scores [B, D, K]``, ``dn_bbox_preds [B, D, 4]``
        against the targets of :meth:`get_dn_targets`.

        The class term is normalised as DETR's, by the weighted number of positive and negative
        queries (``num_pos + bg_cls_weight * num_neg``), the box terms by the number of positive
        queries, both averaged over GPUs.
        """
        cls_scores = dn_cls_scores.reshape(-1, self.cls_out_channels)
        labels, label_weights = labels.flatten(), label_weights.flatten()
        cls_avg_factor = num_pos * 1.0 + num_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)

        # [B, 1, 4] (w, h, w, h): GIoU is taken on absolute boxes, as DETR's
        factors = dn_bbox_preds.new_tensor([[m['img_shape'][1], m['img_shape'][0]] * 2
                                            for m in batch_img_metas])[:, None, :]
        boxes = dn_bbox_preds.reshape(-1, 4)
        targets = bbox_targets.reshape(-1, 4)
        weights = bbox_weights.reshape(-1, 4)
        abs_boxes = (bbox_cxcywh_to_xyxy(dn_bbox_preds) * factors).reshape(-1, 4)
        abs_targets = (bbox_cxcywh_to_xyxy(bbox_targets) * factors).reshape(-1, 4)

        if cls_scores.numel() == 0:  # no denoising query: zero terms that keep the graph
            loss_cls = cls_scores.sum()
        elif isinstance(self.loss_cls, QualityFocalLoss):
            # quality target: IoU of each positive query's box with its ground truth
            pos = (labels < self.num_classes).nonzero().squeeze(1)
            scores = label_weights.new_zeros(labels.shape)
            scores[pos] = bbox_overlaps(abs_boxes[pos].detach(), abs_targets[pos], is_aligned=True)
            loss_cls = self.loss_cls(
                cls_scores, (labels, scores), label_weights, avg_factor=cls_avg_factor)
        else:
            loss_cls = self.loss_cls(cls_scores, labels, label_weights, avg_factor=cls_avg_factor)

        box_avg_factor = torch.clamp(reduce_mean(loss_cls.new_tensor([num_pos])), min=1).item()
        loss_iou = self.loss_iou(abs_boxes, abs_targets, weights, avg_factor=box_avg_factor)
        loss_bbox = self.loss_bbox(boxes, targets, weights, avg_factor=box_avg_factor)
        return loss_cls, loss_bbox, loss_iou

    def get_dn_targets(self, batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                       dn_meta: DnMeta) -> Tuple[Tensor, Tensor, Tensor, Tensor, int, int]:
        """Targets of the denoising queries, known without matching.

        Within group ``g`` of image ``b`` (queries ``2Mg .. 2M(g+1)``), the positive query
        ``2Mg + j`` reconstructs the ``j``-th ground truth; the negative query ``2Mg + M + j``
        and the padding (``j`` past the image's count) are "no object".

        Returns:
            ``labels [B, D]`` (``num_classes`` = no object), ``label_weights [B, D]`` (all 1),
            normalised ``cxcywh`` ``bbox_targets [B, D, 4]``, ``bbox_weights [B, D, 4]`` (1 on
            positive queries), and the batch's numbers of positive and of negative queries.
        """
        num_groups = dn_meta['num_denoising_groups']
        num_dn = dn_meta['num_denoising_queries']
        max_num_target = num_dn // (2 * num_groups)
        batch_size = len(batch_gt_instances)
        boxes = [get_box_tensor(gt.bboxes) for gt in batch_gt_instances]
        device = boxes[0].device

        # ground truths padded to [B, M], normalised cxcywh as the head predicts them
        gt_labels = torch.full((batch_size, max_num_target),
                               self.num_classes,
                               dtype=torch.long,
                               device=device)
        gt_boxes = boxes[0].new_zeros((batch_size, max_num_target, 4))
        valid = torch.zeros((batch_size, max_num_target), dtype=torch.bool, device=device)
        for b, (gt, box, meta) in enumerate(zip(batch_gt_instances, boxes, batch_img_metas)):
            n = len(box)
            img_h, img_w = meta['img_shape'][:2]
            gt_labels[b, :n] = gt.labels
            gt_boxes[b, :n] = bbox_xyxy_to_cxcywh(box / box.new_tensor([img_w, img_h] * 2))
            valid[b, :n] = True

        def per_query(x: Tensor) -> Tensor:
            """``[B, 1 or G, 1 or 2, M, *]`` -> ``[B, D, *]`` (query ``2Mg + Mp + j``)."""
            x = x.expand(batch_size, num_groups, 2, *x.shape[3:])
            return x.reshape(batch_size, num_dn, *x.shape[4:])

        is_positive_copy = torch.tensor([True, False], device=device)[:, None]  # [2, 1]
        positive = per_query(valid[:, None, None] & is_positive_copy)
        labels = torch.where(positive, per_query(gt_labels[:, None, None]), self.num_classes)
        label_weights = gt_boxes.new_ones((batch_size, num_dn))
        bbox_targets = torch.where(positive[..., None], per_query(gt_boxes[:, None, None]), 0.)
        bbox_weights = positive[..., None].to(gt_boxes.dtype).expand(-1, -1, 4).contiguous()
        num_pos = int(valid.sum()) * num_groups
        return labels, label_weights, bbox_targets, bbox_weights, num_pos, num_pos
