"""Contrastive denoising (CDN) queries of DINO.

DN-DETR (Li et al., "DN-DETR: Accelerate DETR Training by Introducing Query DeNoising", CVPR 2022,
https://arxiv.org/abs/2203.01305) feeds the decoder, next to its ``Q`` matching queries, noised
copies of the ground truths ("denoising queries") whose targets are known without matching: each
must reconstruct its own ground truth.  This stabilises the bipartite matching and speeds up
training.  DINO (Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes for End-to-End
Object Detection", ICLR 2023, https://arxiv.org/abs/2203.03605, Sec. 3.3) makes it *contrastive*:
every group holds two noised copies of each ground truth,

* a **positive** query, its box corners moved by less than ``λ/2`` of the box size
  (``|noise| < 1``), which must reconstruct the ground truth, and
* a **negative** query, moved by between ``λ/2`` and ``λ`` of the box size
  (``1 <= |noise| < 2``), which must predict "no object",

so the decoder learns to reject anchors near, but not on, an object.  A fraction
``label_noise_scale / 2`` of the class labels is also replaced by a random class (label
flipping, DN-DETR Sec. 3.3).  Labels enter the decoder as a learnt embedding (the content query),
boxes as ``inverse_sigmoid`` of normalised ``cxcywh`` (the anchor, i.e. the reference box).

The denoising queries are put in front of the matching ones, ``G`` groups of ``2 * M`` queries
(``M``: most ground truths of an image in the batch; images with fewer are padded with zero
queries); an attention mask keeps each group from seeing the other groups, and the matching
queries from seeing any denoising query (DN-DETR Sec. 3.4), so no ground truth leaks into the
matching part.

Constructor arguments, parameters (``label_embedding``), outputs and the order of the random
draws equal ``mmdet.models.layers.CdnQueryGenerator`` (mmdet 3.3.0): with the same torch seed,
both generate the same queries.
"""
import warnings
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh, get_box_tensor
from mmengine.model import BaseModule
from torch import Tensor

from .inverse_sigmoid import inverse_sigmoid

__all__ = ['CdnQueryGenerator']


class CdnQueryGenerator(BaseModule):
    """Generates DINO's contrastive denoising queries from the ground truths of a batch.

    Args:
        num_classes: Number of object classes ``K``; the label embedding has ``K`` rows.
        embed_dims: Channels ``C`` of the content (label) queries.
        num_matching_queries: Number ``Q`` of matching queries that follow the denoising ones
            (the attention mask covers both).
        label_noise_scale: Twice the fraction of labels replaced by a random class. Defaults to
            0.5 (a quarter of the labels are redrawn, some to their own class).
        box_noise_scale: ``λ``: corners of positive boxes move by less than ``λ/2`` of the box
            width/height, those of negative boxes by ``[λ/2, λ)``. Defaults to 1.0.
        group_cfg: Grouping of the denoising queries. ``dict(dynamic=False, num_groups=G)``:
            always ``G`` groups; ``dict(dynamic=True, num_dn_queries=N)`` (the default, ``N`` =
            100 with a warning when not given): ``max(1, N // M)`` groups, so that about ``N``
            positive queries are made per image whatever ``M``.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int,
                 num_matching_queries: int,
                 label_noise_scale: float = 0.5,
                 box_noise_scale: float = 1.0,
                 group_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if label_noise_scale < 0 or box_noise_scale < 0:
            raise ValueError('CdnQueryGenerator: label_noise_scale and box_noise_scale must be '
                             f'>= 0, got {label_noise_scale} and {box_noise_scale}')
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_matching_queries = num_matching_queries
        self.label_noise_scale = label_noise_scale
        self.box_noise_scale = box_noise_scale

        group_cfg = {} if group_cfg is None else group_cfg
        self.dynamic_dn_groups = group_cfg.get('dynamic', True)
        if self.dynamic_dn_groups:
            if 'num_dn_queries' not in group_cfg:
                warnings.warn("CdnQueryGenerator: dynamic dn groups without 'num_dn_queries'; "
                              'using 100')
            self.num_dn_queries = group_cfg.get('num_dn_queries', 100)
            if not isinstance(self.num_dn_queries, int):
                raise TypeError('group_cfg.num_dn_queries must be an int, got '
                                f'{type(self.num_dn_queries).__name__}')
        else:
            if 'num_groups' not in group_cfg:
                raise KeyError('CdnQueryGenerator: static dn groups (dynamic=False) need '
                               'group_cfg.num_groups')
            self.num_groups = group_cfg['num_groups']
            if not isinstance(self.num_groups, int):
                raise TypeError('group_cfg.num_groups must be an int, got '
                                f'{type(self.num_groups).__name__}')

        # One row per object class: DINO's official code has an unused extra "unknown" row,
        # mmdet (whose checkpoints we load) has not.
        self.label_embedding = nn.Embedding(num_classes, embed_dims)

    def get_num_groups(self, max_num_target: int) -> int:
        """Number ``G`` of denoising groups for a batch whose largest image has
        ``max_num_target`` ground truths (at least 1)."""
        if not self.dynamic_dn_groups:
            return max(int(self.num_groups), 1)
        if max_num_target == 0:
            return 1
        return max(int(self.num_dn_queries // max_num_target), 1)

    def __call__(self, batch_data_samples: SampleList) -> Tuple[Tensor, Tensor, Tensor, Dict]:
        """Denoising queries for a batch.

        Args:
            batch_data_samples: Data samples with ``gt_instances.bboxes`` (absolute ``xyxy``),
                ``gt_instances.labels`` and ``metainfo['img_shape']``.

        Returns:
            tuple:

            - ``dn_label_query [B, D, C]``: content queries, ``D = 2 * G * M``; query
              ``2 * M * g + j`` (``j < M``) is the positive copy of the image's ``j``-th ground
              truth in group ``g``, query ``2 * M * g + M + j`` its negative copy; queries past
              an image's own count are zero padding.
            - ``dn_bbox_query [B, D, 4]``: ``inverse_sigmoid`` of the noised normalised
              ``cxcywh`` boxes (zero on padding).
            - ``attn_mask [D + Q, D + Q]`` bool, True where a query (row) may not attend to a
              key (column).
            - ``dn_meta``: ``dict(num_denoising_queries=D, num_denoising_groups=G)``.
        """
        labels, boxes = [], []
        for sample in batch_data_samples:
            img_h, img_w = sample.metainfo['img_shape'][:2]
            gt_boxes = get_box_tensor(sample.gt_instances.bboxes)
            boxes.append(gt_boxes / gt_boxes.new_tensor([img_w, img_h, img_w, img_h]))
            labels.append(sample.gt_instances.labels)
        num_targets = [len(b) for b in boxes]
        max_num_target = max(num_targets)
        num_groups = self.get_num_groups(max_num_target)

        # Noise is drawn over the batch's concatenated targets, labels first, copy by copy
        # (the order of the random draws is mmdet's, so a seed gives the same queries).
        label_query = self.label_embedding(self.noisy_labels(torch.cat(labels), num_groups))
        bbox_query = self.noisy_boxes(torch.cat(boxes), num_groups)

        label_query, bbox_query = self.collate(label_query, bbox_query, num_targets)
        attn_mask = self.attn_mask(max_num_target, num_groups, device=label_query.device)
        dn_meta = dict(
            num_denoising_queries=int(2 * num_groups * max_num_target),
            num_denoising_groups=num_groups)
        return label_query, bbox_query, attn_mask, dn_meta

    def noisy_labels(self, gt_labels: Tensor, num_groups: int) -> Tensor:
        """``[2G, N]`` labels: ``2G`` copies of the ``N`` concatenated ``gt_labels``, each label
        replaced by a uniformly random class with probability ``label_noise_scale / 2``.

        Copies ``2g`` and ``2g + 1`` are the positive and negative queries of group ``g``.
        """
        labels = gt_labels.repeat(2 * num_groups, 1)
        flip = torch.rand(labels.shape, device=labels.device) < self.label_noise_scale * 0.5
        # one random class per flipped label, in row-major order
        new = torch.randint(
            0, self.num_classes, (int(flip.sum()), ), dtype=labels.dtype, device=labels.device)
        return labels.masked_scatter(flip, new)

    def noisy_boxes(self, gt_boxes: Tensor, num_groups: int) -> Tensor:
        """``[2G, N, 4]`` anchors: ``inverse_sigmoid`` of the noised ``cxcywh`` boxes.

        Each corner coordinate of a normalised ``xyxy`` box moves by ``s * u * λ/2`` times the box
        width (x) or height (y), with a random sign ``s`` and ``u ~ U[0, 1)`` for positive copies
        (even rows), ``u ~ U[1, 2)`` for negative ones (odd rows); boxes are clipped to the image.
        """
        boxes = gt_boxes.repeat(2 * num_groups, 1, 1)  # [2G, N, 4] xyxy in [0, 1]
        sign = torch.randint(
            0, 2, boxes.shape, dtype=torch.float32, device=boxes.device).to(boxes.dtype) * 2 - 1
        magnitude = torch.rand_like(boxes)
        magnitude[1::2] += 1.0  # negatives: [1, 2)
        wh = (boxes[..., 2:] - boxes[..., :2]).repeat(1, 1, 2)  # (w, h, w, h)
        noisy = boxes + (magnitude * sign) * wh * self.box_noise_scale / 2
        noisy = bbox_xyxy_to_cxcywh(noisy.clamp(min=0.0, max=1.0))
        return inverse_sigmoid(noisy, eps=1e-3)

    def collate(self, label_query: Tensor, bbox_query: Tensor,
                num_targets: List[int]) -> Tuple[Tensor, Tensor]:
        """Scatter ``[2G, N, *]`` per-target queries to ``[B, 2G * M, *]`` per-image ones.

        Target ``j`` of image ``b`` in copy ``k`` goes to query ``k * M + j`` of image ``b``
        (``M = max(num_targets)``); the rest is zero padding.
        """
        copies, device = label_query.size(0), label_query.device
        batch_size, max_num_target = len(num_targets), max(num_targets)
        image = torch.cat([torch.full((n, ), b, device=device) for b, n in enumerate(num_targets)])
        slot = torch.cat([torch.arange(n, device=device) for n in num_targets])
        out = []
        for query in (label_query, bbox_query):
            padded = query.new_zeros(batch_size, max_num_target, copies, query.size(-1))
            padded[image.long(), slot.long()] = query.transpose(0, 1)  # [N, 2G, *]
            out.append(
                padded.transpose(1, 2).reshape(batch_size, copies * max_num_target, query.size(-1)))
        return out[0], out[1]

    def attn_mask(self, max_num_target: int, num_groups: int, device: Union[torch.device,
                                                                            str]) -> Tensor:
        """``[D + Q, D + Q]`` bool self-attention mask (True: may not attend).

        Denoising queries see their own group and every matching query; matching queries see
        only matching queries (they must not learn from the ground truth in the noised ones).
        """
        num_dn = 2 * num_groups * max_num_target
        total = num_dn + self.num_matching_queries
        index = torch.arange(total, device=device)
        # group id of each query; the matching queries form group G
        group = torch.where(index < num_dn, index // max(2 * max_num_target, 1),
                            torch.full_like(index, num_groups))
        key_is_dn = (index < num_dn)[None, :]
        return (group[:, None] != group[None, :]) & key_is_dn
