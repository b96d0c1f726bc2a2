"""MaskFormer head: one head for semantic (mmseg) and panoptic (mmdet) segmentation.

MaskFormer (Cheng et al., "Per-Pixel Classification is Not All You Need for Semantic
Segmentation", NeurIPS 2021) predicts ``N`` (class, binary mask) pairs
``z = {(p_i, m_i)}``: a pixel decoder (Sec. 3.3) makes per-pixel embeddings, a transformer
predictor turns learned queries into class distributions over ``K + 1`` classes and mask
embeddings, masks are dot products of the two (see :mod:`.transformer_predictor`).

Training (Sec. 3.2, eq. 3): the predictions are matched one-to-one to the ground-truth segments
by the Hungarian method with the matching cost ``-p_i(c_j) + L_mask(m_i, m_j^gt)``, and

    L = sum_j [ -log p_sigma(j)(c_j^gt) + 1{c_j^gt != ∅} L_mask(m_sigma(j), m_j^gt) ],

where unmatched predictions learn ∅ with the cross-entropy down-weighted by 0.1 and
``L_mask = 20 * focal + 1 * dice`` (Sec. 4, "Training settings").  The same loss is applied to
every decoder layer (auxiliary losses).

Inference (Sec. 3.4): *semantic*: ``argmax_c sum_i p_i(c) m_i[h, w]`` -- the head returns the
``[B, K, H, W]`` sum and mmseg's EncoderDecoder takes the argmax; *panoptic*: the head returns the
last layer's logits and :class:`~mmext.models.seg_heads.MaskFormerFusionHead` does the rest.

Both toolboxes call the same head:

* mmseg's ``EncoderDecoder`` (``decode_head``): ``loss(x, data_samples, train_cfg)`` with
  ``gt_sem_seg`` (each class present, except ``ignore_index``, is one target segment; ignored
  pixels belong to no target mask) and ``predict(x, batch_img_metas, test_cfg) -> seg_logits``;
* mmdet's ``MaskFormer`` (``panoptic_head``): ``loss(x, data_samples)`` with ``gt_instances``
  (things) plus ``gt_sem_seg`` (stuff classes ``>= num_things_classes``) and
  ``predict(x, data_samples) -> (cls_logits, mask_logits)``.

Checkpoints of mmdet's and mmseg's ``MaskFormerHead`` load unchanged: their head-level predictor
keys (``query_embed``, ``transformer_decoder``, ``cls_embed``, ...) are moved under
``predictor.`` when a state dict is loaded (see :func:`convert_legacy_keys`).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmext.models.layers import batch_input_shape, padding_mask
from mmext.models.losses import DiceLoss, dice_loss, focal_loss_from_labels
from mmext.models.task_modules.assigners import as_batch_assigner
from mmext.registry import MODELS, TASK_UTILS, build_with_fallback

from .transformer_predictor import MaskFormerTransformerPredictor

__all__ = ['MaskFormerHead', 'convert_legacy_keys', 'LEGACY_PREDICTOR_KEYS']

# head-level module names of mmdet's/mmseg's MaskFormerHead that live in our predictor
LEGACY_PREDICTOR_KEYS = ('query_embed', 'transformer_decoder', 'decoder_input_proj', 'decoder_pe',
                         'cls_embed', 'mask_embed')

DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='ClassificationCost', weight=1.0),
        dict(type='FocalLossCost', weight=20.0, binary_input=True),
        dict(type='DiceCost', weight=1.0, pred_act=True, eps=1.0)
    ])

DEFAULT_DECODER = dict(
    num_layers=6,
    return_intermediate=True,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
        cross_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
        ffn_cfg=dict(
            embed_dims=256,
            feedforward_channels=2048,
            num_fcs=2,
            ffn_drop=0.1,
            act_cfg=dict(type='ReLU', inplace=True))))


def convert_legacy_keys(state_dict: Dict[str, Tensor], prefix: str = '') -> Dict[str, Tensor]:
    """Rename mmdet/mmseg MaskFormerHead keys ``{prefix}cls_embed.*`` ... to
    ``{prefix}predictor.cls_embed.*`` (in place, also returned); other keys are left alone."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest.split('.', 1)[0] in LEGACY_PREDICTOR_KEYS:
            state_dict[f'{prefix}predictor.{rest}'] = state_dict.pop(key)
    return state_dict


def _sem_seg_tensor(pixel_data) -> Tensor:
    """The label map of mmdet's (``sem_seg``) or mmseg's (``data``) ``gt_sem_seg``."""
    if 'sem_seg' in pixel_data:
        return pixel_data.sem_seg
    return pixel_data.data


@MODELS.register_module()
class MaskFormerHead(BaseModule):
    """MaskFormer mask-classification head for mmseg and mmdet (Cheng et al., NeurIPS 2021).

    Args:
        in_channels: Channels of the backbone levels given to the pixel decoder, finest first.
        feat_channels: Width of the pixel decoder and of the transformer (``C_Q``).
        out_channels: ``C_E``, channels of the mask features and embeddings.  (After building,
            ``self.out_channels`` is the number of classes, which mmseg's segmentors read.)
        num_classes: ``K`` for semantic segmentation (mmseg key).  Defaults to
            ``num_things_classes + num_stuff_classes``.
        num_things_classes, num_stuff_classes: The class split of panoptic segmentation (mmdet
            keys; things first).  Default to 80/53, or ``num_classes``/0 when ``num_classes`` is
            given.
        num_queries: ``N``. Defaults to 100.
        pixel_decoder: Pixel decoder config (``in_channels``/``feat_channels``/``out_channels``
            are filled in). Defaults to ``TransformerEncoderPixelDecoder`` with 6 layers.
        enforce_decoder_input_project: 1x1-project the memory even when its width fits.
        transformer_decoder: :class:`~mmext.models.layers.DetrTransformerDecoder` options.
        positional_encoding: Sine positional encoding of the predictor's memory.
        loss_cls: Classification loss; its ``class_weight`` defaults to ``[1] * K +
            [no_object_weight]``.
        loss_mask: Sigmoid focal loss on mask pixels (weight 20).
        loss_dice: Dice loss on masks (weight 1).
        no_object_weight: Cross-entropy weight of the ∅ class. Defaults to 0.1.
        train_cfg: ``assigner`` (default: mmext ``HungarianAssigner`` with class + mask-focal
            + dice costs) and optionally ``sampler`` (only ``MaskPseudoSampler`` semantics).
        test_cfg: Kept for mmdet's interface (the fusion head reads its own copy).
        ignore_index: Label of ignored pixels in ``gt_sem_seg``. Defaults to 255.
        align_corners: mmseg segmentor attribute (masks are always resized with
            ``align_corners=False``, as MaskFormer).
        in_index: Which backbone levels to use (mmseg key). Defaults to all.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 feat_channels: int = 256,
                 out_channels: int = 256,
                 num_classes: Optional[int] = None,
                 num_things_classes: Optional[int] = None,
                 num_stuff_classes: Optional[int] = None,
                 num_queries: int = 100,
                 pixel_decoder: Optional[dict] = None,
                 enforce_decoder_input_project: bool = False,
                 transformer_decoder: Optional[dict] = None,
                 positional_encoding: dict = dict(num_feats=128, normalize=True),
                 loss_cls: dict = dict(
                     type='mmdet.CrossEntropyLoss',
                     use_sigmoid=False,
                     loss_weight=1.0,
                     reduction='mean'),
                 loss_mask: dict = dict(
                     type='mmdet.FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     reduction='mean',
                     loss_weight=20.0),
                 loss_dice: dict = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     reduction='mean',
                     naive_dice=True,
                     eps=1.0,
                     loss_weight=1.0),
                 no_object_weight: float = 0.1,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 ignore_index: int = 255,
                 align_corners: bool = False,
                 in_index: Optional[Sequence[int]] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        unknown = set(kwargs) - {
            'channels', 'dropout_ratio', 'conv_cfg', 'norm_cfg', 'act_cfg', 'input_transform',
            'loss_decode', 'sampler', 'threshold'
        }
        if unknown:
            raise TypeError(f'MaskFormerHead got unexpected config keys {sorted(unknown)}')
        self._init_classes(num_classes, num_things_classes, num_stuff_classes)
        self.num_queries = num_queries
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.in_index = list(in_index) if in_index is not None else None
        self.mask_channels = out_channels
        self.out_channels = self.num_classes  # what mmseg's EncoderDecoder reads

        pixel_decoder = dict(
            pixel_decoder or dict(
                type='TransformerEncoderPixelDecoder',
                encoder=dict(
                    num_layers=6,
                    layer_cfg=dict(
                        self_attn_cfg=dict(embed_dims=feat_channels, num_heads=8, dropout=0.1),
                        ffn_cfg=dict(
                            embed_dims=feat_channels,
                            feedforward_channels=2048,
                            num_fcs=2,
                            ffn_drop=0.1,
                            act_cfg=dict(type='ReLU', inplace=True))))))
        pixel_decoder.update(
            in_channels=list(in_channels), feat_channels=feat_channels, out_channels=out_channels)
        self.pixel_decoder = build_with_fallback(MODELS, pixel_decoder)
        self.predictor = MaskFormerTransformerPredictor(
            num_classes=self.num_classes,
            num_queries=num_queries,
            feat_channels=feat_channels,
            mask_channels=out_channels,
            memory_channels=self._memory_channels(list(in_channels), feat_channels),
            transformer_decoder=dict(transformer_decoder or DEFAULT_DECODER),
            positional_encoding=positional_encoding,
            enforce_input_project=enforce_decoder_input_project and self._memory_is_backbone())

        loss_cls = dict(loss_cls)
        if loss_cls.get('class_weight') is None:
            loss_cls['class_weight'] = [1.0] * self.num_classes + [float(no_object_weight)]
        if len(loss_cls['class_weight']) != self.num_classes + 1:
            raise ValueError(f'MaskFormerHead: loss_cls.class_weight has '
                             f'{len(loss_cls["class_weight"])} entries; it needs num_classes + 1 '
                             f'= {self.num_classes + 1} (the last one for "no object")')
        self.class_weight = list(loss_cls['class_weight'])
        self.loss_cls = build_with_fallback(MODELS, loss_cls)
        self.loss_mask = build_with_fallback(MODELS, dict(loss_mask))
        self.loss_dice = build_with_fallback(MODELS, dict(loss_dice))

        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        train_cfg = dict(train_cfg or {})
        sampler = train_cfg.get('sampler')
        if sampler is not None and 'MaskPseudoSampler' not in str(sampler.get('type')):
            raise ValueError(f'MaskFormerHead matches one-to-one and samples nothing; '
                             f'train_cfg.sampler must be MaskPseudoSampler, got {sampler}')
        self.assigner = build_with_fallback(TASK_UTILS,
                                            dict(train_cfg.get('assigner') or DEFAULT_ASSIGNER))
        self._register_load_state_dict_pre_hook(self._load_legacy_keys)

    # ------------------------------------------------------------------ setup
    def _init_classes(self, num_classes, num_things, num_stuff) -> None:
        if num_classes is None:
            num_things = 80 if num_things is None else num_things
            num_stuff = 53 if num_stuff is None else num_stuff
            num_classes = num_things + num_stuff
        elif num_things is None and num_stuff is None:
            num_things, num_stuff = num_classes, 0  # semantic: every class counts as a thing
        else:
            num_things = num_classes - num_stuff if num_things is None else num_things
            num_stuff = num_classes - num_things if num_stuff is None else num_stuff
        if num_things + num_stuff != num_classes or num_classes <= 0 or min(num_things,
                                                                            num_stuff) < 0:
            raise ValueError(f'MaskFormerHead: num_things_classes ({num_things}) + '
                             f'num_stuff_classes ({num_stuff}) must equal num_classes '
                             f'({num_classes}) > 0')
        self.num_classes = num_classes
        self.num_things_classes = num_things
        self.num_stuff_classes = num_stuff

    def _memory_is_backbone(self) -> bool:
        return not hasattr(self.pixel_decoder, 'encoder')

    def _memory_channels(self, in_channels: List[int], feat_channels: int) -> int:
        if hasattr(self.pixel_decoder, 'memory_channels'):
            return self.pixel_decoder.memory_channels
        # mmdet's decoders: the FPN hands over the backbone's last level, the encoder its output
        return in_channels[-1] if self._memory_is_backbone() else feat_channels

    @staticmethod
    def _load_legacy_keys(state_dict, prefix, *args) -> None:
        convert_legacy_keys(state_dict, prefix)

    # ---------------------------------------------------------------- forward
    @staticmethod
    def _metas(samples_or_metas: Optional[Sequence]) -> Optional[List[dict]]:
        if not samples_or_metas:
            return None
        metas = [dict(s) if isinstance(s, dict) else dict(s.metainfo) for s in samples_or_metas]
        shape = batch_input_shape(metas)
        for m in metas:  # copies: mmdet's pixel decoders read batch_input_shape too
            m.setdefault('batch_input_shape', shape)
        return metas

    def forward(self,
                x: Sequence[Tensor],
                batch_data_samples: Optional[Sequence] = None) -> Tuple[Tensor, Tensor]:
        """Backbone levels -> ``cls_logits [L, B, N, K+1]``, ``mask_logits [L, B, N, h, w]``
        (``h, w``: the mask features' size, 1/4 of the input for a stride-4 first level).

        ``batch_data_samples`` (data samples or meta dicts) give the padding mask.
        """
        feats = [x[i] for i in self.in_index] if self.in_index is not None else list(x)
        metas = self._metas(batch_data_samples)
        mask_features, memory = self.pixel_decoder(feats, metas)
        hw = feats[-1].shape[-2:]
        if metas is not None:
            pad = padding_mask(metas, hw, memory.device)
        else:
            pad = memory.new_zeros((memory.shape[0], ) + tuple(hw), dtype=torch.bool)
        return self.predictor(mask_features, memory, pad)

    # ---------------------------------------------------------------- targets
    def _semantic_targets(self, sem_seg: Tensor) -> InstanceData:
        """One target segment per class present in ``sem_seg [1, H, W]`` (ignored pixels are in
        no mask)."""
        seg = sem_seg.squeeze(0)
        labels = torch.unique(seg)
        labels = labels[labels != self.ignore_index]
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(f'MaskFormerHead: gt_sem_seg holds labels {bad.tolist()} outside '
                             f'[0, {self.num_classes}) and not ignore_index={self.ignore_index}')
        masks = seg[None] == labels[:, None, None]
        return InstanceData(labels=labels.long(), masks=masks)

    def _panoptic_targets(self, gt_instances: InstanceData,
                          gt_sem_seg: Optional[Tensor]) -> InstanceData:
        """Things from ``gt_instances``, one stuff segment per stuff class of ``gt_sem_seg``."""
        labels = gt_instances.labels.long()
        masks = gt_instances.masks
        if hasattr(masks, 'to_tensor'):  # BitmapMasks / PolygonMasks
            masks = masks.to_tensor(dtype=torch.bool, device=labels.device)
        masks = masks.bool()
        if gt_sem_seg is None:
            return InstanceData(labels=labels, masks=masks)
        seg = gt_sem_seg.squeeze(0)
        stuff = torch.unique(seg)
        stuff = stuff[(stuff >= self.num_things_classes) & (stuff < self.num_classes)]
        stuff_masks = seg[None] == stuff[:, None, None]
        if masks.shape[0] and masks.shape[-2:] != stuff_masks.shape[-2:]:
            raise ValueError(f'MaskFormerHead: instance masks {tuple(masks.shape[-2:])} and '
                             f'gt_sem_seg {tuple(stuff_masks.shape[-2:])} differ in size')
        return InstanceData(
            labels=torch.cat([labels, stuff.long()]),
            masks=torch.cat([masks.reshape(-1, *seg.shape), stuff_masks]))

    def get_targets(self, batch_data_samples: Sequence) -> List[InstanceData]:
        """Target segments (``labels [G]``, bool ``masks [G, H, W]``) of every image: panoptic
        when the samples carry ``gt_instances`` (mmdet), semantic otherwise (mmseg)."""
        out = []
        for ds in batch_data_samples:
            sem = _sem_seg_tensor(ds.gt_sem_seg) if 'gt_sem_seg' in ds else None
            if 'gt_instances' in ds:
                out.append(self._panoptic_targets(ds.gt_instances, sem))
            elif sem is not None:
                out.append(self._semantic_targets(sem))
            else:
                raise KeyError('MaskFormerHead.loss: a data sample has neither gt_instances '
                               f'nor gt_sem_seg (keys: {list(ds.keys())})')
        return out

    # ------------------------------------------------------------------- loss
    def loss(self,
             x: Sequence[Tensor],
             batch_data_samples: Sequence,
             train_cfg: Optional[dict] = None) -> Dict[str, Tensor]:
        """Forward and losses.  ``train_cfg`` is the segmentor's (mmseg passes it; unused: the
        head's own ``train_cfg`` holds the assigner)."""
        metas = [ds.metainfo for ds in batch_data_samples]
        targets = self.get_targets(batch_data_samples)
        cls_logits, mask_logits = self(x, batch_data_samples)
        return self.loss_by_feat(cls_logits, mask_logits, targets, metas)

    def _assign(self, cls_logits: Tensor, mask_logits: Tensor, targets: List[InstanceData],
                metas: List[dict]) -> Tensor:
        """Match every layer at once; ``[L, B, N]`` 0-based target index, -1 unmatched."""
        L, B, N = cls_logits.shape[:3]
        hw = mask_logits.shape[-2:]
        small = []  # targets at the mask logits' resolution, as the matching costs see them
        for t in targets:
            m = t.masks
            if m.shape[0]:
                m = F.interpolate(m[:, None].float(), size=hw, mode='nearest')[:, 0]
            else:
                m = m.new_zeros((0, ) + tuple(hw), dtype=torch.float32)
            small.append(InstanceData(labels=t.labels, masks=m))
        preds = [
            InstanceData(scores=cls_logits[i, b].detach(), masks=mask_logits[i, b].detach())
            for i in range(L) for b in range(B)
        ]
        gts = small * L
        # mmext's assigner: one padded cost tensor for the L * B images; others image by image
        results = as_batch_assigner(self.assigner).assign_batch(preds, gts, metas * L)
        gt_inds = torch.stack([r.gt_inds.to(cls_logits.device) for r in results])
        return gt_inds.view(L, B, N) - 1

    def loss_by_feat(self, all_cls_scores: Tensor, all_mask_preds: Tensor,
                     batch_gt_instances: List[InstanceData],
                     batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Losses of every decoder layer (eq. 3 of the paper per layer).

        Args:
            all_cls_scores: ``[L, B, N, K+1]`` class logits.
            all_mask_preds: ``[L, B, N, h, w]`` mask logits.
            batch_gt_instances: Per image ``labels [G]`` and binary ``masks [G, H, W]`` (the
                padded input size, equal for all images).
            batch_img_metas: Per image meta information.

        Returns:
            ``loss_cls``, ``loss_mask``, ``loss_dice`` of the last layer and
            ``d{i}.loss_*`` of the others (mmdet's/mmseg's keys).
        """
        L, B, N, C1 = all_cls_scores.shape
        if C1 != self.num_classes + 1:
            raise ValueError(f'MaskFormerHead: cls scores have {C1} channels, expected '
                             f'num_classes + 1 = {self.num_classes + 1}')
        if not (torch.isfinite(all_cls_scores).all() and torch.isfinite(all_mask_preds).all()):
            raise ValueError('MaskFormerHead: NaN or inf in the predicted class or mask logits')
        match = self._assign(all_cls_scores, all_mask_preds, batch_gt_instances, batch_img_metas)
        device = all_cls_scores.device
        num_gts = [len(t.labels) for t in batch_gt_instances]
        offsets = torch.tensor([0] + num_gts[:-1], device=device).cumsum(0)  # [B]
        all_labels = torch.cat([t.labels.to(device) for t in batch_gt_instances])
        matched = match >= 0  # [L, B, N]
        flat_idx = (match + offsets[None, :, None])[matched]  # per layer, order (b, q)
        per_layer = matched.flatten(1).sum(1).tolist()
        # normaliser of the mask losses: matched targets of the batch (equal in every layer),
        # an image without targets counting as 1 as in mmdet's MaskPseudoSampler
        per_image = matched[-1].sum(1).clamp(min=1).sum()
        num_masks = max(float(reduce_mean(per_image.to(all_cls_scores.dtype))), 1.0)

        class_weight = all_cls_scores.new_tensor(self.class_weight)
        cls_targets = torch.full((L, B, N), self.num_classes, dtype=torch.long, device=device)
        cls_targets[matched] = all_labels[flat_idx]

        sizes = {tuple(t.masks.shape[-2:]) for t in batch_gt_instances if len(t.labels)}
        if len(sizes) > 1:
            raise ValueError(f'MaskFormerHead: target masks of one batch must share the padded '
                             f'input size, got {sorted(sizes)} (pad gt masks/sem_seg in the '
                             'data preprocessor)')
        if sum(per_layer):
            gt_masks = torch.cat([t.masks.to(device).bool() for t in batch_gt_instances])
            H, W = gt_masks.shape[-2:]
            # one resize for every layer's matched masks (bilinear, as MaskFormer)
            preds_up = F.interpolate(
                all_mask_preds[matched][:, None], size=(H, W), mode='bilinear',
                align_corners=False)[:, 0]
            targets_up = gt_masks[flat_idx]
            chunks = list(zip(preds_up.split(per_layer), targets_up.split(per_layer)))

        losses = {}
        for layer in range(L):
            labels = cls_targets[layer].flatten()
            loss_cls = self.loss_cls(
                all_cls_scores[layer].flatten(0, 1),
                labels,
                torch.ones_like(labels),
                avg_factor=class_weight[labels].sum())
            if per_layer[layer] == 0:  # no target anywhere: keep the graph, add nothing
                loss_mask = loss_dice = all_mask_preds[layer].sum() * 0
            else:
                pred, tgt = chunks[layer]
                loss_dice = self._dice(pred, tgt, num_masks)
                # focal loss on each pixel: label 0 = "in the mask", 1 = background
                loss_mask = focal_loss_from_labels(
                    self.loss_mask,
                    pred.reshape(-1, 1), (~tgt).reshape(-1).long(),
                    avg_factor=num_masks * H * W)
            pre = '' if layer == L - 1 else f'd{layer}.'
            losses[f'{pre}loss_cls'] = loss_cls
            losses[f'{pre}loss_mask'] = loss_mask
            losses[f'{pre}loss_dice'] = loss_dice
        return losses

    def _dice(self, pred: Tensor, target: Tensor, avg_factor: float) -> Tensor:
        """``loss_dice(pred, target, avg_factor=...)``; for mmext's sigmoid DiceLoss the same
        formula without its input checks (the logits were checked once, targets are binary
        masks built here), which saves several passes over ``[N, H, W]`` per layer."""
        fn = self.loss_dice
        if isinstance(fn, DiceLoss) and fn.activate and fn.use_sigmoid and \
                fn.reduction == 'mean':
            return fn.loss_weight * dice_loss(
                pred.sigmoid(), target, eps=fn.eps, naive_dice=fn.naive_dice, avg_factor=avg_factor)
        return fn(pred, target.long(), avg_factor=avg_factor)

    # -------------------------------------------------------------- inference
    @staticmethod
    def semantic_inference(cls_logits: Tensor, mask_logits: Tensor) -> Tensor:
        """``sum_i softmax(p_i)[c] * sigmoid(m_i)`` -> ``[B, K, H, W]`` (paper Sec. 3.4; ∅
        dropped)."""
        probs = cls_logits.softmax(-1)[..., :-1]
        return torch.einsum('bqc,bqhw->bchw', probs, mask_logits.sigmoid())

    def predict(self,
                x: Sequence[Tensor],
                batch_data_samples: Sequence,
                test_cfg: Optional[dict] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Inference for either toolbox.

        * mmseg (``batch_data_samples`` are meta dicts): ``seg_logits [B, K, H, W]`` at the
          first image's ``img_shape``, the softmax x sigmoid sum of the last layer.
        * mmdet (data samples): the last layer's ``cls_logits [B, N, K+1]`` and ``mask_logits
          [B, N, H, W]`` resized to ``batch_input_shape``, for the panoptic fusion head.
        """
        semantic = all(isinstance(m, dict) for m in batch_data_samples)
        metas = self._metas(batch_data_samples)
        if semantic:
            # mmseg feeds unpadded images (or slide-window crops whose img_shape is the crop)
            # at test time, so img_shape is the input size; its pad_shape may be stale
            for m in metas:
                m['batch_input_shape'] = tuple(metas[0]['img_shape'][:2])
        cls_logits, mask_logits = self(x, metas)
        cls_logits, mask_logits = cls_logits[-1], mask_logits[-1]
        size = tuple(metas[0]['batch_input_shape'][:2])
        mask_logits = F.interpolate(mask_logits, size=size, mode='bilinear', align_corners=False)
        if semantic:
            return self.semantic_inference(cls_logits, mask_logits)
        return cls_logits, mask_logits
