"""Deformable DETR's prediction head: one class/box branch per decoder layer, boxes relative to
the layer's reference.

Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., ICLR 2021,
https://arxiv.org/abs/2010.04159), Sec. 4.1 ("Deformable Transformer decoder") and appendix A.4.
Decoder layer ``d``'s output goes through its own class branch (a linear layer, sigmoid logits
trained with focal loss) and box branch (a 3-layer ReLU MLP).  The box is predicted *relative to
the reference* ``b_{d-1}`` the layer attended around, in logit space:

    b̂_d = σ(Δ_d + σ⁻¹(b_{d-1})),

where only the centre is offset when the reference is a point ``(x, y)`` (plain Deformable DETR:
``b̂ = σ(Δ_xy + σ⁻¹(p), Δ_wh)``) and the whole box when it is a box (iterative refinement, after
the first layer, and the two-stage variant).  Without refinement all layers share one pair of
branches; with it each layer has its own (``share_pred_layer``).  The two-stage variant adds one
more pair, used by the detector to score and regress the encoder's per-cell proposals; its loss
(``enc_loss_*``) is the same Hungarian loss with every ground truth relabelled as class 0
(foreground), as in the official code.

The losses of each decoder layer are DETR's Hungarian loss (:class:`DETRHead`, batched matching
with ``mmext.HungarianAssigner``).  Config keys, state-dict keys (``cls_branches.{d}``,
``reg_branches.{d}.{0,2,4}``), losses and predictions equal mmdet 3.3.0's
``DeformableDETRHead``; ``share_pred_layer``, ``num_pred_layer`` and ``as_two_stage`` are set by
the detector.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmdet.structures import SampleList
from mmdet.utils import InstanceList, OptInstanceList
from mmengine.model import bias_init_with_prob
from mmengine.structures import InstanceData
from torch import Tensor

from mmext.models.layers import inverse_sigmoid
from mmext.registry import MODELS

from .detr_head import DETRHead


@MODELS.register_module()
class DeformableDETRHead(DETRHead):
    """Per-layer class/box branches of Deformable DETR (Zhu et al., 2021) and their losses.

    Args:
        share_pred_layer: One class and one box branch shared by all layers (no box
            refinement). Defaults to False.
        num_pred_layer: Number of branch pairs: the decoder layers, plus one for the encoder
            proposals when ``as_two_stage``. Defaults to 6.
        as_two_stage: Also compute the encoder-proposal loss. Defaults to False.
        *args, **kwargs: :class:`DETRHead` options (``num_classes``, ``embed_dims``,
            ``num_reg_fcs``, ``sync_cls_avg_factor``, the losses, ``train_cfg``, ``test_cfg``).
    """

    def __init__(self,
                 *args,
                 share_pred_layer: bool = False,
                 num_pred_layer: int = 6,
                 as_two_stage: bool = False,
                 **kwargs) -> None:
        # read by _init_layers, which DETRHead.__init__ calls
        self.share_pred_layer = share_pred_layer
        self.num_pred_layer = num_pred_layer
        self.as_two_stage = as_two_stage
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        """``cls_branches``/``reg_branches``: ``num_pred_layer`` linear class branches and
        MLP box branches ``(Linear, ReLU) x num_reg_fcs, Linear(C, 4)``, one module repeated
        when shared."""
        fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        layers = []
        for _ in range(self.num_reg_fcs):
            layers += [nn.Linear(self.embed_dims, self.embed_dims), nn.ReLU()]
        reg_branch = nn.Sequential(*layers, nn.Linear(self.embed_dims, 4))
        if self.share_pred_layer:
            self.cls_branches = nn.ModuleList([fc_cls] * self.num_pred_layer)
            self.reg_branches = nn.ModuleList([reg_branch] * self.num_pred_layer)
        else:
            self.cls_branches = nn.ModuleList(
                [copy.deepcopy(fc_cls) for _ in range(self.num_pred_layer)])
            self.reg_branches = nn.ModuleList(
                [copy.deepcopy(reg_branch) for _ in range(self.num_pred_layer)])

    def init_weights(self) -> None:
        """Official initialisation: class biases at prior 0.01 (sigmoid losses), box deltas
        zero, so the first boxes are the references with ``w = h = σ(-2) ≈ 0.12`` (or the
        proposals' own size in the two-stage variant)."""
        if self.use_sigmoid_cls:
            bias = bias_init_with_prob(0.01)
            for branch in self.cls_branches:
                nn.init.constant_(branch.bias, bias)
        for branch in self.reg_branches:
            nn.init.zeros_(branch[-1].weight)
            nn.init.zeros_(branch[-1].bias)
        with torch.no_grad():
            self.reg_branches[0][-1].bias[2:] = -2.0
            if self.as_two_stage:
                for branch in self.reg_branches:
                    branch[-1].bias[2:] = 0.0

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def forward(self, hidden_states: Tensor, references: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Class logits and boxes of every decoder layer.

        Args:
            hidden_states: ``[D, B, Q, C]`` decoder outputs.
            references: ``D + 1`` tensors ``[B, Q, 2 or 4]``: the initial reference and the
                references after each layer; layer ``d`` predicts relative to ``references[d]``
                (the last one is unused).

        Returns:
            ``[D, B, Q, cls_out_channels]`` logits and ``[D, B, Q, 4]`` normalised ``cxcywh``
            boxes.
        """
        outs = [
            self.forward_layer(d, hidden_states[d], references[d])
            for d in range(hidden_states.size(0))
        ]
        return torch.stack([c for c, _ in outs]), torch.stack([b for _, b in outs])

    def forward_layer(self, layer_id: int, hidden_state: Tensor,
                      reference: Tensor) -> Tuple[Tensor, Tensor]:
        """Branch pair ``layer_id`` on ``hidden_state [B, Q, C]`` with ``reference [B, Q, 2 or
        4]``: logits ``[B, Q, K]`` and boxes ``σ(Δ + σ⁻¹(reference))`` ``[B, Q, 4]``."""
        logits = self.cls_branches[layer_id](hidden_state)
        delta = self.reg_branches[layer_id](hidden_state)
        reference = inverse_sigmoid(reference)
        if reference.size(-1) == 4:
            boxes = delta + reference
        elif reference.size(-1) == 2:  # a point offsets the centre only
            boxes = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
        else:
            raise ValueError('references must end in 2 (x, y) or 4 (cx, cy, w, h) coordinates, '
                             f'got {reference.size(-1)}')
        return logits, boxes.sigmoid()

    # ------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------
    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer and, for the two-stage variant, of the encoder
        proposals (``enc_outputs_class [B, N, K]``, ``enc_outputs_coord [B, N, 4]``; None
        otherwise)."""
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        return self.loss_by_feat(*self(hidden_states, references), enc_outputs_class,
                                 enc_outputs_coord, batch_gt_instances, batch_img_metas)

    def loss_and_predict(self, hidden_states: Tensor, references: List[Tensor],
                         enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
                         batch_data_samples: SampleList) -> Tuple[dict, InstanceList]:
        """Losses as :meth:`loss` and detections of the last layer (without rescaling)."""
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outs = self(hidden_states, references)
        losses = self.loss_by_feat(*outs, enc_outputs_class, enc_outputs_coord, batch_gt_instances,
                                   batch_img_metas)
        return losses, self.predict_by_feat(*outs, batch_img_metas=batch_img_metas)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """:meth:`DETRHead.loss_by_feat` of the decoder layers, then ``enc_loss_cls``/
        ``enc_loss_bbox``/``enc_loss_iou`` of the encoder proposals when given: every
        ground truth is a class-0 (foreground) target there."""
        losses = super().loss_by_feat(all_layers_cls_scores, all_layers_bbox_preds,
                                      batch_gt_instances, batch_img_metas,
                                      batch_gt_instances_ignore)
        if enc_cls_scores is not None:
            foreground = [
                InstanceData(bboxes=gt.bboxes, labels=torch.zeros_like(gt.labels))
                for gt in batch_gt_instances
            ]
            enc_losses = self.loss_by_feat_single(enc_cls_scores, enc_bbox_preds, foreground,
                                                  batch_img_metas)
            for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), enc_losses):
                losses[f'enc_{name}'] = value
        return losses

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    def predict(self,
                hidden_states: Tensor,
                references: List[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True) -> InstanceList:
        """Detections from the last decoder layer (the only one computed)."""
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        last = hidden_states.size(0) - 1
        cls_scores, bbox_preds = self.forward_layer(last, hidden_states[last], references[last])
        return self.predict_by_feat(
            cls_scores[None], bbox_preds[None], batch_img_metas=batch_img_metas, rescale=rescale)
