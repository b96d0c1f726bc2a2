"""DETR's prediction head and set-prediction loss.

DETR: End-to-End Object Detection with Transformers (Carion et al., ECCV 2020,
https://arxiv.org/abs/2005.12872).  Every decoder output (one per object query) is mapped by a
linear layer to ``num_classes + 1`` logits (the last one is "no object", ``∅``) and by a 3-layer
ReLU MLP to a box ``(cx, cy, w, h)`` normalised by the image size (sigmoid output), Sec. 3.2.

Training (Sec. 3.1): the ``N`` predictions of each image are matched one-to-one to its ground
truths by the Hungarian algorithm on the matching cost (eq. 1)

    C(i, σ(i)) = -λ_cls p̂_σ(i)(c_i) + λ_L1 ||b_i - b̂_σ(i)||_1 - λ_giou GIoU(b_i, b̂_σ(i)),

and the Hungarian loss (eq. 2) is a cross entropy over all ``N`` predictions (unmatched ones have
target ``∅``, their log-probability down-weighted by ``bg_cls_weight = 0.1``), plus, over the
matched ones, ``λ_L1`` L1 on normalised ``cxcywh`` boxes and ``λ_giou`` generalised IoU
(Rezatofighi et al., CVPR 2019) on absolute ``xyxy`` boxes.  The class term is normalised by the
class-weighted number of predictions, ``num_pos + 0.1 * num_neg`` (as the official code's
weighted-mean cross entropy), the box terms by the number of ground truths, both averaged over
GPUs.  The same loss is applied to the output of every decoder layer ("auxiliary decoding losses",
Sec. 3.2); the last layer's terms are ``loss_cls``/``loss_bbox``/``loss_iou`` and layer ``i``'s are
``d{i}.loss_cls`` ... .

Images without ground truth are valid: all their predictions are "no object" targets of the class
term (weight ``bg_cls_weight``), and they add nothing to the box terms; a batch without any box
gives zero box losses that still carry a (zero) gradient.

Config keys, parameters, state-dict keys, losses and predictions equal
``mmdet.models.dense_heads.DETRHead`` (mmdet 3.3.0).
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from mmdet.models.losses import QualityFocalLoss
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import ConfigType, InstanceList, OptInstanceList, OptMultiConfig, reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmext.models.task_modules.assigners import as_batch_assigner
from mmext.models.utils import raise_on_nonfinite_gt_boxes
from mmext.registry import MODELS, TASK_UTILS, build_with_fallback

_DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='ClassificationCost', weight=1.),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)
    ])


@MODELS.register_module()
class DETRHead(BaseModule):
    """Classification/box head and Hungarian set loss of DETR (Carion et al., 2020).

    Args:
        num_classes: Number of object classes (without "no object").
        embed_dims: Channels of the decoder outputs. Defaults to 256.
        num_reg_fcs: Hidden ReLU layers of the box MLP before ``fc_reg``. Defaults to 2.
        sync_cls_avg_factor: Average the class-loss normaliser over GPUs. Defaults to False.
        loss_cls: Class loss config. With softmax cross entropy, a float ``class_weight`` is the
            weight of every object class and ``bg_cls_weight`` (default: ``class_weight``) that of
            "no object", the last logit.
        loss_bbox: L1 loss config on normalised ``cxcywh`` boxes (``λ_L1 = 5``).
        loss_iou: IoU loss config on absolute ``xyxy`` boxes (GIoU, ``λ_giou = 2``).
        train_cfg: ``dict(assigner=...)``; the assigner gets per image
            ``InstanceData(scores=logits, bboxes=absolute xyxy)`` and the ground truths, all
            images in one ``assign_batch`` call when it has that method (mmext's), else one
            ``assign`` call per image (mmdet's).
        test_cfg: ``dict(max_per_img=100)``: detections kept per image.
        init_cfg: Initialisation config.
    """

    _version = 2  # state-dict metadata version, as mmdet's

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_reg_fcs: int = 2,
                 sync_cls_avg_factor: bool = False,
                 loss_cls: ConfigType = dict(
                     type='CrossEntropyLoss',
                     bg_cls_weight=0.1,
                     use_sigmoid=False,
                     loss_weight=1.0,
                     class_weight=1.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[ConfigType] = dict(assigner=_DEFAULT_ASSIGNER),
                 test_cfg: ConfigType = dict(max_per_img=100),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_reg_fcs = num_reg_fcs
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

        loss_cls = self._with_no_object_weight(dict(copy.deepcopy(loss_cls)))
        self.loss_cls = build_with_fallback(MODELS, loss_cls)
        self.loss_bbox = build_with_fallback(MODELS, loss_bbox)
        self.loss_iou = build_with_fallback(MODELS, loss_iou)
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, 'use_sigmoid', False))
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1

        if train_cfg:
            if 'assigner' not in train_cfg:
                raise KeyError('DETRHead: train_cfg needs an `assigner` (Hungarian matching)')
            if train_cfg.get('sampler') is not None:
                raise ValueError('DETRHead: the one-to-one matching uses every prediction; '
                                 'train_cfg must not have a sampler')
            self.assigner = build_with_fallback(TASK_UTILS, dict(train_cfg['assigner']))
        self._init_layers()

    def _init_layers(self) -> None:
        """Build the class and box branches (a hook for subclasses, as mmdet's)."""
        embed_dims = self.embed_dims
        # Registration order fixes the state-dict order; equal to mmdet's.
        self.fc_cls = nn.Linear(embed_dims, self.cls_out_channels)
        self.activate = nn.ReLU()
        # hidden layers of the box MLP: (Linear, ReLU) x num_reg_fcs, no residual
        self.reg_ffn = FFN(
            embed_dims,
            embed_dims,
            self.num_reg_fcs,
            dict(type='ReLU', inplace=True),
            ffn_drop=0.0,
            add_identity=False)
        self.fc_reg = nn.Linear(embed_dims, 4)

    def _with_no_object_weight(self, loss_cls: dict) -> dict:
        """Turn a scalar ``class_weight`` + ``bg_cls_weight`` into the per-class weight vector
        of the softmax cross entropy (``∅`` last), as DETR's ``eos_coef``."""
        self.bg_cls_weight = 0.
        bg_cls_weight = loss_cls.pop('bg_cls_weight', None)
        class_weight = loss_cls.get('class_weight')
        if loss_cls.get('use_sigmoid', False) or class_weight is None:
            return loss_cls
        if not isinstance(class_weight, (int, float)):
            raise TypeError(f'DETRHead: loss_cls.class_weight must be a float (weight of every '
                            f'object class), got {type(class_weight).__name__}')
        if bg_cls_weight is None:
            bg_cls_weight = class_weight
        if not isinstance(bg_cls_weight, (int, float)):
            raise TypeError(f'DETRHead: loss_cls.bg_cls_weight must be a float, '
                            f'got {type(bg_cls_weight).__name__}')
        self.bg_cls_weight = float(bg_cls_weight)
        loss_cls['class_weight'] = [float(class_weight)] * self.num_classes + [self.bg_cls_weight]
        return loss_cls

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def forward(self, hidden_states: Tensor) -> Tuple[Tensor, Tensor]:
        """``[L, B, Q, C]`` decoder outputs -> class logits ``[L, B, Q, cls_out_channels]`` and
        sigmoid-normalised ``cxcywh`` boxes ``[L, B, Q, 4]``."""
        cls_scores = self.fc_cls(hidden_states)
        bbox_preds = self.fc_reg(self.activate(self.reg_ffn(hidden_states))).sigmoid()
        return cls_scores, bbox_preds

    # ------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------
    def loss(self, hidden_states: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Hungarian losses of every decoder layer, from the decoder outputs."""
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        return self.loss_by_feat(*self(hidden_states), batch_gt_instances, batch_img_metas)

    def loss_and_predict(self, hidden_states: Tensor,
                         batch_data_samples: SampleList) -> Tuple[dict, InstanceList]:
        """Losses of all layers and detections of the last one (without rescaling)."""
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outs = self(hidden_states)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)
        return losses, self.predict_by_feat(*outs, batch_img_metas=batch_img_metas)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Loss dict: the last layer's ``loss_cls``/``loss_bbox``/``loss_iou`` and
        ``d{i}.loss_*`` of every earlier layer ``i``."""
        if batch_gt_instances_ignore is not None:
            raise ValueError('DETRHead has no notion of ignored boxes; '
                             'batch_gt_instances_ignore must be None')
        self._raise_on_nan(
            all_layers_cls_scores=all_layers_cls_scores,
            all_layers_bbox_preds=all_layers_bbox_preds)
        # else the matching fails with a NaN cost that names no image
        raise_on_nonfinite_gt_boxes([get_box_tensor(gt.bboxes) for gt in batch_gt_instances],
                                    batch_img_metas, 'DETRHead')
        num_layers = all_layers_cls_scores.size(0)
        losses = dict()
        for i in range(num_layers):
            loss_cls, loss_bbox, loss_iou = self.loss_by_feat_single(all_layers_cls_scores[i],
                                                                     all_layers_bbox_preds[i],
                                                                     batch_gt_instances,
                                                                     batch_img_metas)
            prefix = '' if i == num_layers - 1 else f'd{i}.'
            losses[f'{prefix}loss_cls'] = loss_cls
            losses[f'{prefix}loss_bbox'] = loss_bbox
            losses[f'{prefix}loss_iou'] = loss_iou
        # mmdet's order: the last layer first, then d0, d1, ...
        last = {k: losses.pop(k) for k in ('loss_cls', 'loss_bbox', 'loss_iou')}
        return {**last, **losses}

    def loss_by_feat_single(self, cls_scores: Tensor, bbox_preds: Tensor,
                            batch_gt_instances: InstanceList,
                            batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor, Tensor]:
        """Hungarian loss (eq. 2) of one decoder layer: ``cls_scores [B, Q, K]``,
        ``bbox_preds [B, Q, 4]`` (normalised ``cxcywh``)."""
        labels, bbox_targets, bbox_weights, num_pos = self.get_targets(
            cls_scores, bbox_preds, batch_gt_instances, batch_img_metas)
        num_preds = labels.numel()
        labels = labels.flatten()
        cls_flat = cls_scores.reshape(-1, self.cls_out_channels)
        label_weights = cls_flat.new_ones(num_preds)

        # class-weighted count of predictions: the official code's weighted-mean CE
        cls_avg_factor = num_pos * 1.0 + (num_preds - num_pos) * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_flat.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)

        # [B, 1, 4] (w, h, w, h) of each image: normalised <-> absolute coordinates
        factors = bbox_preds.new_tensor([[m['img_shape'][1], m['img_shape'][0]] * 2
                                         for m in batch_img_metas])[:, None, :]
        boxes_flat = bbox_preds.reshape(-1, 4)
        targets_flat = bbox_targets.reshape(-1, 4)
        weights_flat = bbox_weights.reshape(-1, 4)
        abs_boxes = (bbox_cxcywh_to_xyxy(bbox_preds) * factors).reshape(-1, 4)
        abs_targets = (bbox_cxcywh_to_xyxy(bbox_targets) * factors).reshape(-1, 4)

        if isinstance(self.loss_cls, QualityFocalLoss):
            # quality target: IoU of each matched prediction with its ground truth
            pos = (labels < self.num_classes).nonzero().squeeze(1)
            scores = label_weights.new_zeros(num_preds)
            scores[pos] = bbox_overlaps(abs_boxes[pos].detach(), abs_targets[pos], is_aligned=True)
            loss_cls = self.loss_cls(
                cls_flat, (labels, scores), label_weights, avg_factor=cls_avg_factor)
        else:
            loss_cls = self.loss_cls(cls_flat, labels, label_weights, avg_factor=cls_avg_factor)

        # number of boxes, averaged over GPUs, for the box terms
        box_avg_factor = torch.clamp(reduce_mean(loss_cls.new_tensor([num_pos])), min=1).item()
        loss_iou = self.loss_iou(abs_boxes, abs_targets, weights_flat, avg_factor=box_avg_factor)
        loss_bbox = self.loss_bbox(
            boxes_flat, targets_flat, weights_flat, avg_factor=box_avg_factor)
        return loss_cls, loss_bbox, loss_iou

    def get_targets(self, cls_scores: Tensor, bbox_preds: Tensor, batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor, Tensor, int]:
        """Match each image's predictions to its ground truths (Hungarian).

        The whole batch is matched in one ``assign_batch`` call (mmext's ``HungarianAssigner``;
        a per-image assigner such as mmdet's is called image by image through
        :func:`as_batch_assigner`), then the targets are gathered from padded ground truths.

        Returns:
            ``labels [B, Q]`` (``num_classes`` = no object), normalised ``cxcywh``
            ``bbox_targets [B, Q, 4]`` and ``bbox_weights [B, Q, 4]`` (1 on matched predictions,
            0 elsewhere), and the number of matched predictions of the batch.
        """
        if len(batch_gt_instances) != cls_scores.size(0):
            raise ValueError(f'{cls_scores.size(0)} images of predictions but '
                             f'{len(batch_gt_instances)} of ground truth')
        num_imgs, num_queries = cls_scores.shape[:2]
        # [B, 1, 4] (w, h, w, h) of each image; the assigner's costs compare absolute xyxy boxes
        factors = bbox_preds.new_tensor([[m['img_shape'][1], m['img_shape'][0]] * 2
                                         for m in batch_img_metas])[:, None, :]
        abs_preds = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        pred_instances = [
            InstanceData(scores=cls_scores[i], bboxes=abs_preds[i]) for i in range(num_imgs)
        ]
        results = as_batch_assigner(self.assigner).assign_batch(pred_instances, batch_gt_instances,
                                                                batch_img_metas)
        gt_inds = torch.stack([r.gt_inds for r in results]).long()  # [B, Q], 1-based, 0 = bg
        pos = gt_inds > 0
        num_pos = int(pos.sum())
        labels = cls_scores.new_full((num_imgs, num_queries), self.num_classes, dtype=torch.long)
        bbox_targets = bbox_preds.new_zeros((num_imgs, num_queries, 4))
        bbox_weights = bbox_preds.new_zeros((num_imgs, num_queries, 4))
        if num_pos == 0:
            return labels, bbox_targets, bbox_weights, 0  # every query is "no object"
        # ground truths padded to [B, G_max]; padding is never gathered (only pos queries are)
        boxes = [get_box_tensor(gt.bboxes) for gt in batch_gt_instances]
        num_gts = [len(b) for b in boxes]
        # padded in the boxes' own dtype, cast at the end, as the per-image path does
        gt_boxes = boxes[0].new_zeros((num_imgs, max(num_gts), 4))
        gt_labels = labels.new_zeros((num_imgs, max(num_gts)))
        for i, (b, gt, n) in enumerate(zip(boxes, batch_gt_instances, num_gts)):
            if n:
                gt_boxes[i, :n] = b
                gt_labels[i, :n] = gt.labels
        idx = (gt_inds - 1).clamp(min=0)
        matched_boxes = gt_boxes.gather(1, idx[..., None].expand(-1, -1, 4))
        matched_labels = gt_labels.gather(1, idx)
        labels = torch.where(pos, matched_labels, labels)
        targets = bbox_xyxy_to_cxcywh(matched_boxes / factors).to(bbox_targets.dtype)
        bbox_targets = torch.where(pos[..., None], targets, bbox_targets)
        bbox_weights = pos[..., None].to(bbox_weights.dtype).expand_as(bbox_weights).clone()
        return labels, bbox_targets, bbox_weights, num_pos

    @staticmethod
    def _raise_on_nan(**tensors: Tensor) -> None:
        """``ValueError`` naming the tensor and decoder layer holding a NaN.

        The Hungarian matching (scipy or ours) would otherwise fail with an unrelated message or
        silently produce an arbitrary matching.
        """
        for name, tensor in tensors.items():
            nan = torch.isnan(tensor.detach())
            if bool(nan.any()):
                per_layer = nan.flatten(1).sum(1).tolist() if tensor.dim() > 1 else []
                layers = [i for i, n in enumerate(per_layer) if n]
                raise ValueError(
                    f'DETRHead: {name} holds {int(nan.sum())} NaN of {tensor.numel()} values '
                    f'(decoder layer(s) {layers}); training has diverged or the input features '
                    'are NaN')

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    def predict(self,
                hidden_states: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> InstanceList:
        """Detections from the last decoder layer's outputs."""
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outs = self(hidden_states[-1].unsqueeze(0))
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    def predict_by_feat(self,
                        layer_cls_scores: Tensor,
                        layer_bbox_preds: Tensor,
                        batch_img_metas: List[dict],
                        rescale: bool = True) -> InstanceList:
        """Top-``max_per_img`` detections per image from the last layer of ``[L, B, Q, *]``
        outputs: ``bboxes`` (xyxy, in the original image if ``rescale``), ``scores``,
        ``labels``."""
        self._raise_on_nan(layer_cls_scores=layer_cls_scores, layer_bbox_preds=layer_bbox_preds)
        cls_scores, bbox_preds = layer_cls_scores[-1], layer_bbox_preds[-1]
        return [
            self._predict_by_feat_single(cls_scores[i], bbox_preds[i], meta, rescale)
            for i, meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self,
                                cls_score: Tensor,
                                bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        num_queries = cls_score.size(0)
        max_per_img = (self.test_cfg or {}).get('max_per_img', num_queries)
        if self.use_sigmoid_cls:
            # every (query, class) pair competes for the top-k
            scores, flat_inds = cls_score.sigmoid().flatten().topk(
                min(max_per_img, cls_score.numel()))
            labels = flat_inds % self.num_classes
            bbox_pred = bbox_pred[flat_inds // self.num_classes]
        else:
            # best object class per query (softmax over classes and ∅, ∅ excluded)
            scores, labels = F.softmax(cls_score, dim=-1)[..., :-1].max(-1)
            scores, keep = scores.topk(min(max_per_img, num_queries))
            bbox_pred, labels = bbox_pred[keep], labels[keep]

        img_h, img_w = img_meta['img_shape'][:2]
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred)
        bboxes = bboxes * bboxes.new_tensor([img_w, img_h, img_w, img_h])
        bboxes = torch.minimum(bboxes.clamp(min=0), bboxes.new_tensor([img_w, img_h] * 2))
        if rescale:
            scale_factor = img_meta.get('scale_factor')
            if scale_factor is None:
                raise KeyError('DETRHead.predict(rescale=True) needs img_meta["scale_factor"]')
            bboxes = bboxes / bboxes.new_tensor(scale_factor).repeat((1, 2))
        results = InstanceData()
        results.bboxes = bboxes
        results.scores = scores
        results.labels = labels
        return results
