"""FCOS head with batch-vectorised target assignment.

FCOS: Fully Convolutional One-Stage Object Detection (Tian et al., ICCV 2019; TPAMI 2020,
https://arxiv.org/abs/1904.01355).  Every feature-map location ``(x, y)`` of pyramid level ``i``
predicts class logits, the distances ``(l, t, r, b)`` from the location to the four sides of a box
and a *centerness* logit.  Targets (paper, Sec. 3.1-3.3):

* a location is a positive of ground truth box ``B = (x1, y1, x2, y2)`` if it lies strictly inside
  ``B`` (or, with center sampling, inside ``B`` shrunk to ``radius * stride_i`` around its center)
  and ``m_{i-1} <= max(l*, t*, r*, b*) <= m_i`` where ``l* = x - x1, t* = y - y1,
  r* = x2 - x, b* = y2 - y`` (eq. 1) and ``(m_{i-1}, m_i)`` is the level's regress range;
* a location matching several boxes takes the one with the smallest area (ties: lowest box index);
* the centerness target is ``sqrt(min(l*, r*) / max(l*, r*) * min(t*, b*) / max(t*, b*))``
  (eq. 3).

Loss (eq. 2): focal loss on all locations averaged over the positives, an IoU/GIoU loss on the
positives weighted by their centerness targets, and a binary cross entropy on centerness.  At test
time the class score is multiplied by the predicted centerness before NMS (``score_sqrt=True``
takes the square root of that product, i.e. the geometric mean).

Parameters, state-dict keys, initialisation, forward outputs, losses and detections match
``mmdet.models.dense_heads.FCOSHead`` (mmdet 3.3.0), so ``type='mmdet.FCOSHead'`` can be swapped for
``type='mmext.FCOSHead'`` and mmdet checkpoints load unchanged.  What differs is how targets are
computed: one pass over a ``[num_imgs, num_points, max_num_gts]`` problem instead of one per image
(see :meth:`FCOSHead.get_targets`).
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, Scale
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.layers import NormedConv2d
from mmdet.models.task_modules.prior_generators import MlvlPointGenerator
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType, OptInstanceList,
                         reduce_mean)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mmext.models.losses import focal_loss_from_labels
from mmext.models.utils import raise_on_nonfinite_gt_boxes
from mmext.registry import MODELS, TASK_UTILS, build_with_fallback

INF = 1e8  # area sentinel for "not a candidate"; equal to mmdet's so ties/background match

LevelOutputs = Tuple[List[Tensor], List[Tensor], List[Tensor]]


def _flatten_levels(mlvl: Sequence[Tensor]) -> Tensor:
    """``[B, C, H_i, W_i]`` per level -> ``[B, sum_i H_i * W_i, C]`` with a single copy.

    ``permute(0, 2, 3, 1).flatten(1, 2)`` is a view of an NCHW tensor, so ``cat`` is the only copy
    (mmdet's ``permute().reshape(-1, C)`` copies once more per level, and again in backward).
    """
    return torch.cat([t.permute(0, 2, 3, 1).flatten(1, 2) for t in mlvl], dim=1)


@MODELS.register_module()
class FCOSHead(BaseDenseHead):
    """Anchor-free FCOS head (Tian et al., 2019): shared conv towers, per-level learnable scales.

    Args:
        num_classes: Number of foreground classes.
        in_channels: Channels of each input feature map.
        feat_channels: Channels of the tower convs. Defaults to 256.
        stacked_convs: Number of 3x3 convs in each tower. Defaults to 4.
        strides: Stride of each pyramid level (square strides). Defaults to (4, 8, 16, 32, 64).
        dcn_on_last_conv: Use DCNv2 for the last conv of each tower. Defaults to False.
        conv_bias: Bias of the tower convs; ``'auto'`` means "only without a norm layer".
        regress_ranges: ``(min, max)`` of ``max(l*, t*, r*, b*)`` accepted on each level.
        center_sampling: Positives must lie within ``center_sample_radius * stride`` of the box
            center (clipped to the box). Defaults to False.
        center_sample_radius: Radius of center sampling in strides. Defaults to 1.5.
        norm_on_bbox: Regress distances in units of the level's stride, with a ReLU instead of
            ``exp`` on the regression output (predictions are multiplied back by the stride at
            test time). Defaults to False.
        centerness_on_reg: Put the centerness branch on the regression tower instead of the
            classification tower. Defaults to False.
        loss_cls: Classification loss config (sigmoid focal loss by default).
        loss_bbox: Box loss config, applied to decoded boxes (IoU loss by default).
        loss_centerness: Centerness loss config (sigmoid binary cross entropy by default).
        bbox_coder: Decodes ``(l, t, r, b)`` into boxes. Defaults to ``DistancePointBBoxCoder``.
        conv_cfg: Conv layer config of the towers.
        norm_cfg: Norm layer config of the towers. Defaults to GN with 32 groups.
        cls_predictor_cfg: If given, ``conv_cls`` is mmdet's 1x1 ``NormedConv2d`` built with
            these options (its ``type`` key is ignored), as in mmdet.
        train_cfg: Training config (unused by FCOS; kept for the detector interface).
        test_cfg: Post-processing config (``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``,
            ``min_bbox_size``).
        score_sqrt: Use ``sqrt(cls_score * centerness)`` as detection score instead of the product.
            Defaults to False, mmdet's behaviour.
        init_cfg: Initialisation config; by default normal(std=0.01) convs and a
            ``bias_prob=0.01`` prior on ``conv_cls``.
    """

    # Checkpoints of the pre-``conv_*`` naming (``fcos_cls`` ...) carry no version; see
    # ``_load_from_state_dict``.
    _version = 1

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        dcn_on_last_conv: bool = False,
        conv_bias: Union[bool, str] = 'auto',
        regress_ranges: Sequence[Tuple[float, float]] = ((-1, 64), (64, 128), (128, 256),
                                                         (256, 512), (512, INF)),
        center_sampling: bool = False,
        center_sample_radius: float = 1.5,
        norm_on_bbox: bool = False,
        centerness_on_reg: bool = False,
        loss_cls: ConfigType = dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox: ConfigType = dict(type='IoULoss', loss_weight=1.0),
        loss_centerness: ConfigType = dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        bbox_coder: ConfigType = dict(type='DistancePointBBoxCoder'),
        conv_cfg: OptConfigType = None,
        norm_cfg: OptConfigType = dict(type='GN', num_groups=32, requires_grad=True),
        cls_predictor_cfg: OptConfigType = None,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        score_sqrt: bool = False,
        init_cfg: MultiConfig = dict(
            type='Normal',
            layer='Conv2d',
            std=0.01,
            override=dict(type='Normal', name='conv_cls', std=0.01, bias_prob=0.01))
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if conv_bias != 'auto' and not isinstance(conv_bias, bool):
            raise ValueError(f"conv_bias must be 'auto' or a bool, got {conv_bias!r}")
        if len(regress_ranges) != len(strides):
            raise ValueError(f'{len(strides)} strides but {len(regress_ranges)} regress_ranges; '
                             'FCOS needs one regress range per pyramid level')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = strides
        self.dcn_on_last_conv = dcn_on_last_conv
        self.conv_bias = conv_bias
        self.regress_ranges = regress_ranges
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.norm_on_bbox = norm_on_bbox
        self.centerness_on_reg = centerness_on_reg
        self.score_sqrt = score_sqrt
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.cls_predictor_cfg = cls_predictor_cfg
        # mmdet's post-processing reads test_cfg by attribute (cfg.nms); accept plain dicts too.
        self.train_cfg = ConfigDict(train_cfg) if isinstance(train_cfg, dict) else train_cfg
        self.test_cfg = ConfigDict(test_cfg) if isinstance(test_cfg, dict) else test_cfg
        self.fp16_enabled = False

        self.use_sigmoid_cls = loss_cls.get('use_sigmoid', False)
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1
        self.loss_cls = build_with_fallback(MODELS, loss_cls)
        self.loss_bbox = build_with_fallback(MODELS, loss_bbox)
        self.bbox_coder = build_with_fallback(TASK_UTILS, bbox_coder)
        self.prior_generator = MlvlPointGenerator(strides)
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        # Targets and norm_on_bbox use one scalar stride per level.
        for stride_w, stride_h in self.prior_generator.strides:
            if stride_w != stride_h:
                raise ValueError(f'FCOSHead needs square strides, got {strides}')
        self._level_strides = [float(s[0]) for s in self.prior_generator.strides]

        # Registration order below fixes the state-dict key order and the RNG order of
        # init_weights; both equal mmdet's.
        self.cls_convs = self._make_tower()
        self.reg_convs = self._make_tower()
        if cls_predictor_cfg is None:
            self.conv_cls = nn.Conv2d(feat_channels, self.cls_out_channels, 3, padding=1)
        else:
            options = {k: v for k, v in cls_predictor_cfg.items() if k != 'type'}
            self.conv_cls = NormedConv2d(
                feat_channels, self.cls_out_channels, 1, padding=0, **options)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in strides])
        self.loss_centerness = build_with_fallback(MODELS, loss_centerness)

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def _make_tower(self) -> nn.ModuleList:
        tower = nn.ModuleList()
        for i in range(self.stacked_convs):
            last = i == self.stacked_convs - 1
            tower.append(
                ConvModule(
                    self.in_channels if i == 0 else self.feat_channels,
                    self.feat_channels,
                    3,
                    stride=1,
                    padding=1,
                    conv_cfg=dict(
                        type='DCNv2') if self.dcn_on_last_conv and last else self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    bias=self.conv_bias))
        return tower

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def forward(self, x: Iterable[Tensor]) -> LevelOutputs:
        """Per-level ``cls_scores [B, C, H, W]``, ``bbox_preds [B, 4, H, W]`` (distances, in pixels
        or, when ``norm_on_bbox`` and training, in strides) and ``centernesses [B, 1, H, W]``.

        ``x`` is any iterable of the level maps (a tuple from a neck, a list, a generator), as
        mmdet's heads take.
        """
        x = tuple(x)  # a generator has no len()
        if len(x) != self.num_levels:
            raise ValueError(f'FCOSHead got {len(x)} feature maps for {self.num_levels} strides')
        cls_scores, bbox_preds, centernesses = [], [], []
        for feat, scale, stride in zip(x, self.scales, self._level_strides):
            cls_score, bbox_pred, centerness = self.forward_single(feat, scale, stride)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
            centernesses.append(centerness)
        return cls_scores, bbox_preds, centernesses

    def forward_single(self, x: Tensor, scale: Scale,
                       stride: float) -> Tuple[Tensor, Tensor, Tensor]:
        """One pyramid level through both towers and the three predictors."""
        cls_feat = x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        reg_feat = x
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        cls_score = self.conv_cls(cls_feat)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        # fp32 so that exp() cannot overflow under fp16 training
        bbox_pred = scale(self.conv_reg(reg_feat)).float()
        if self.norm_on_bbox:
            # ReLU as clamp: an in-place relu would overwrite what autograd saved for backward
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * stride
        else:
            bbox_pred = bbox_pred.exp()
        return cls_score, bbox_pred, centerness

    # ------------------------------------------------------------------------------------------
    # targets
    # ------------------------------------------------------------------------------------------
    def get_targets(self, points: List[Tensor],
                    batch_gt_instances: InstanceList) -> Tuple[Tensor, Tensor]:
        """Assign every point of every level of every image in one batched pass.

        Ground truths are padded to the batch maximum ``M`` with a validity mask, and all tests are
        evaluated on ``[B, P, M]`` tensors (``P`` = points of all levels).  The match is the
        candidate of minimal area; ``min`` returns the first minimum, so ties go to the lowest box
        index and padded boxes (area ``INF``) never win over a real candidate, as in mmdet.

        Args:
            points: Point coordinates ``(x, y)`` per level, each ``[P_i, 2]``.
            batch_gt_instances: Per image ``bboxes [n, 4]`` (xyxy) and ``labels [n]``.

        Returns:
            ``labels [B, P]`` (``num_classes`` = background) and ``bbox_targets [B, P, 4]``
            (``l, t, r, b``; divided by the level stride when ``norm_on_bbox``).  Points are in
            level-major order, i.e. ``torch.cat(points)``.
        """
        if len(points) != len(self.regress_ranges):
            raise ValueError(f'{len(points)} levels of points for {len(self.regress_ranges)} '
                             'regress ranges')
        flat_points = torch.cat(points)
        num_points = flat_points.size(0)
        xs, ys = flat_points[:, 0], flat_points[:, 1]

        gt_bboxes = [get_box_tensor(gt.bboxes) for gt in batch_gt_instances]
        gt_labels = [gt.labels for gt in batch_gt_instances]
        num_imgs = len(gt_bboxes)
        num_gts = [len(b) for b in gt_bboxes]
        if max(num_gts, default=0) == 0:
            return (flat_points.new_full(
                (num_imgs, num_points), self.num_classes,
                dtype=torch.long), flat_points.new_zeros((num_imgs, num_points, 4)))
        boxes = pad_sequence(gt_bboxes, batch_first=True)  # [B, M, 4]
        labels_pad = pad_sequence(gt_labels, batch_first=True)  # [B, M]
        num_gts_t = torch.tensor(num_gts, device=boxes.device)
        valid = torch.arange(boxes.size(1), device=boxes.device) < num_gts_t[:, None]

        lower, upper, radius, level_stride = self._per_point_params(points, flat_points)
        x = xs[None, :, None]
        y = ys[None, :, None]
        x1, y1, x2, y2 = (boxes[:, None, :, i] for i in range(4))  # [B, 1, M] each

        # eq. (1) for every (image, point, box); [B, P, M] buffers are reused in place because
        # allocating them costs as much as the arithmetic on CPU
        left, top = x - x1, y - y1
        right, bottom = x2 - x, y2 - y
        if self.center_sampling:
            # strictly inside the box shrunk to radius*stride around its center and clipped to
            # the box.  `x > max(cx - r, x1)` is mmdet's `x - where(cx - r > x1, cx - r, x1) > 0`:
            # a difference of floats is > 0 iff they compare so, and a NaN coordinate fails the
            # test of its axis in both forms.
            r = radius[None, :, None]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            bound = torch.empty_like(left)
            candidate = x > torch.maximum(torch.sub(cx, r, out=bound), x1, out=bound)
            candidate &= y > torch.maximum(torch.sub(cy, r, out=bound), y1, out=bound)
            candidate &= x < torch.minimum(torch.add(cx, r, out=bound), x2, out=bound)
            candidate &= y < torch.minimum(torch.add(cy, r, out=bound), y2, out=bound)
            del bound
        else:
            # strictly inside: a zero-width/height box can never get a positive
            candidate = left > 0
            candidate &= top > 0
            candidate &= right > 0
            candidate &= bottom > 0
        max_dist = torch.maximum(left, top, out=left)
        max_dist = torch.maximum(max_dist, torch.maximum(right, bottom, out=right), out=max_dist)
        del top, right, bottom
        candidate &= max_dist >= lower[None, :, None]
        candidate &= max_dist <= upper[None, :, None]
        candidate &= valid[:, None, :]

        areas = (x2 - x1) * (y2 - y1)  # [B, 1, M]
        masked_areas = torch.where(candidate, areas, areas.new_tensor(INF), out=max_dist)
        min_area, gt_inds = masked_areas.min(dim=2)  # [B, P]
        labels = labels_pad.gather(1, gt_inds)
        labels[min_area == INF] = self.num_classes

        matched = boxes.gather(1, gt_inds[..., None].expand(-1, -1, 4))  # [B, P, 4]
        bbox_targets = torch.stack((xs - matched[..., 0], ys - matched[..., 1],
                                    matched[..., 2] - xs, matched[..., 3] - ys),
                                   dim=-1)
        # mmdet leaves zeros (not distances to a padded box) for images without boxes
        bbox_targets.masked_fill_((num_gts_t == 0)[:, None, None], 0)
        if self.norm_on_bbox:
            bbox_targets = bbox_targets / level_stride[None, :, None]
        return labels, bbox_targets

    def _per_point_params(self, points: List[Tensor],
                          flat_points: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Regress range bounds, center-sampling radius and stride of each point, ``[P]`` each."""
        per_level = flat_points.new_tensor([
            (lo, hi, s * self.center_sample_radius, s)
            for (lo, hi), s in zip(self.regress_ranges, self._level_strides)
        ])
        counts = torch.tensor([p.size(0) for p in points], device=flat_points.device)
        per_point = per_level.repeat_interleave(counts, dim=0, output_size=flat_points.size(0))
        return per_point.unbind(1)

    @staticmethod
    def centerness_target(pos_bbox_targets: Tensor) -> Tensor:
        """FCOS eq. (3): ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` for ``[N, 4]``
        positive targets (only positives: a background target may be negative or zero)."""
        left, top, right, bottom = pos_bbox_targets.unbind(-1)
        lr = torch.minimum(left, right) / torch.maximum(left, right)
        tb = torch.minimum(top, bottom) / torch.maximum(top, bottom)
        return torch.sqrt(lr * tb)

    # ------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------
    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Focal loss over all points, centerness-weighted IoU loss and centerness BCE over the
        positives (FCOS eq. 2); ``batch_gt_instances_ignore`` is unused, as in mmdet."""
        if not len(cls_scores) == len(bbox_preds) == len(centernesses) == self.num_levels:
            raise ValueError(f'expected {self.num_levels} levels of cls_scores, bbox_preds and '
                             f'centernesses, got {len(cls_scores)}, {len(bbox_preds)}, '
                             f'{len(centernesses)}')
        flat_cls = _flatten_levels(cls_scores)  # [B, P, C]
        flat_bbox = _flatten_levels(bbox_preds)  # [B, P, 4]
        flat_ctr = _flatten_levels(centernesses)  # [B, P, 1]
        self._raise_on_nan(
            flat_cls, flat_bbox, flat_ctr,
            dict(cls_scores=cls_scores, bbox_preds=bbox_preds, centernesses=centernesses))
        # a NaN/inf box would silently get no positive in get_targets (as in mmdet)
        raise_on_nonfinite_gt_boxes([get_box_tensor(gt.bboxes) for gt in batch_gt_instances],
                                    batch_img_metas, 'FCOSHead')

        featmap_sizes = [c.shape[-2:] for c in cls_scores]
        points = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device)
        labels, bbox_targets = self.get_targets(points, batch_gt_instances)

        flat_labels = labels.reshape(-1)
        flat_cls = flat_cls.reshape(-1, self.cls_out_channels)
        pos_inds = ((flat_labels >= 0) & (flat_labels < self.num_classes)).nonzero().reshape(-1)
        num_pos = torch.tensor(len(pos_inds), dtype=torch.float, device=flat_cls.device)
        num_pos = max(reduce_mean(num_pos), 1.0)

        losses = dict()
        loss_cls = focal_loss_from_labels(self.loss_cls, flat_cls, flat_labels, num_pos)
        if getattr(self.loss_cls, 'custom_accuracy', False):
            losses.update(self.loss_cls.get_accuracy(flat_cls, flat_labels))

        pos_bbox_preds = flat_bbox.reshape(-1, 4)[pos_inds]
        pos_centerness = flat_ctr.reshape(-1)[pos_inds]
        pos_bbox_targets = bbox_targets.reshape(-1, 4)[pos_inds]
        pos_centerness_targets = self.centerness_target(pos_bbox_targets)
        centerness_denorm = max(reduce_mean(pos_centerness_targets.sum().detach()), 1e-6)

        if len(pos_inds) > 0:
            # index into [B * P] is image-major, so the point is index % P
            pos_points = torch.cat(points)[pos_inds % flat_bbox.size(1)]
            loss_bbox = self.loss_bbox(
                self.bbox_coder.decode(pos_points, pos_bbox_preds),
                self.bbox_coder.decode(pos_points, pos_bbox_targets),
                weight=pos_centerness_targets,
                avg_factor=centerness_denorm)
            loss_centerness = self.loss_centerness(
                pos_centerness, pos_centerness_targets, avg_factor=num_pos)
        else:
            # zero-valued but connected to the graph, so DDP sees every parameter used
            loss_bbox = pos_bbox_preds.sum()
            loss_centerness = pos_centerness.sum()

        losses['loss_cls'] = loss_cls
        losses['loss_bbox'] = loss_bbox
        losses['loss_centerness'] = loss_centerness
        return losses

    def _raise_on_nan(self, flat_cls: Tensor, flat_bbox: Tensor, flat_ctr: Tensor,
                      per_level: Dict[str, List[Tensor]]) -> None:
        """Raise a ``ValueError`` naming the tensor and level that holds a NaN.

        The fast path is three sums and one host sync; levels are only scanned once the sum is
        NaN (which ``+inf + -inf`` can also cause, hence no error when the scan finds nothing).
        """
        total = flat_cls.detach().sum() + flat_bbox.detach().sum() + flat_ctr.detach().sum()
        if not torch.isnan(total):
            return
        for name, levels in per_level.items():
            for level, tensor in enumerate(levels):
                num_nan = int(torch.isnan(tensor.detach()).sum())
                if num_nan:
                    raise ValueError(
                        f'FCOSHead.loss_by_feat: {name}[{level}] (level {level}, stride '
                        f'{self.strides[level]}) holds {num_nan} NaN of {tensor.numel()} values; '
                        'training has diverged or the input features are NaN')

    # ------------------------------------------------------------------------------------------
    # inference (BaseDenseHead.predict_by_feat with centerness as score factor)
    # ------------------------------------------------------------------------------------------
    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigDict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """mmdet's post-processing (score *= centerness, NMS); with ``score_sqrt`` the score is the
        geometric mean ``sqrt(cls * centerness)`` instead."""
        if self.score_sqrt and 'score_factors' in results:
            results.scores = torch.sqrt(results.scores * results.pop('score_factors'))
        return super()._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        """Rename the predictors of unversioned (mmdet 1.x) checkpoints: ``fcos_cls`` ->
        ``conv_cls``, ``fcos_reg`` -> ``conv_reg``, ``fcos_centerness`` -> ``conv_centerness``."""
        if local_metadata.get('version') is None:
            for key in [k for k in state_dict if k.startswith(prefix)]:
                module, _, rest = key[len(prefix):].partition('.')
                for suffix in ('cls', 'reg', 'centerness'):
                    if rest and module.endswith(suffix) and module != f'conv_{suffix}':
                        state_dict[f'{prefix}conv_{suffix}.{rest}'] = state_dict.pop(key)
                        break
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
