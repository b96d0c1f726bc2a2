"""Tiny MaskFormer heads (ours and the toolboxes') on shared random weights, and their inputs."""
import copy

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from mmext.models.seg_heads import MaskFormerHead

C, Q, LAYERS = 32, 10, 3
IN_CHANNELS = [8, 16, 24, 32]
IMG = 64  # input side; levels at strides 4, 8, 16, 32


def layer(drop=0.0):
    attn = dict(embed_dims=C, num_heads=4, attn_drop=drop, proj_drop=drop, batch_first=True)
    return dict(
        self_attn_cfg=attn,
        cross_attn_cfg=dict(attn),
        ffn_cfg=dict(
            embed_dims=C,
            feedforward_channels=48,
            num_fcs=2,
            ffn_drop=drop,
            act_cfg=dict(type='ReLU', inplace=True)))


def head_cfg(num_classes, encoder=True, ours=True, panoptic=None):
    """Config for ours (``ours=True``) or mmdet's/mmseg's head; same architecture either way."""
    pe = dict(num_feats=C // 2, normalize=True)
    if encoder:
        pixel_decoder = dict(
            type='TransformerEncoderPixelDecoder'
            if ours else 'mmdet.TransformerEncoderPixelDecoder',
            norm_cfg=dict(type='GN', num_groups=8),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=C, num_heads=4, dropout=0.0, batch_first=True),
                    ffn_cfg=dict(embed_dims=C, feedforward_channels=48, num_fcs=2, ffn_drop=0.0))),
            positional_encoding=pe)
    else:
        pixel_decoder = dict(
            type='PixelDecoder' if ours else 'mmdet.PixelDecoder',
            norm_cfg=dict(type='GN', num_groups=8),
            act_cfg=dict(type='ReLU'))
    scope = '' if ours else 'mmdet.'
    K = num_classes if panoptic is None else sum(panoptic)
    cfg = dict(
        in_channels=IN_CHANNELS,
        feat_channels=C,
        out_channels=C,
        num_queries=Q,
        pixel_decoder=pixel_decoder,
        enforce_decoder_input_project=False,
        positional_encoding=pe,
        transformer_decoder=dict(num_layers=LAYERS, return_intermediate=True, layer_cfg=layer()),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            reduction='mean',
            class_weight=[1.0] * K + [0.1]),
        loss_mask=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            reduction='mean',
            loss_weight=20.0),
        loss_dice=dict(
            type=f'{"" if ours else "mmdet."}DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type=f'{scope}HungarianAssigner',
                match_costs=[
                    dict(type=f'{scope}ClassificationCost', weight=1.0),
                    dict(type=f'{scope}FocalLossCost', weight=20.0, binary_input=True),
                    dict(type=f'{scope}DiceCost', weight=1.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler')))
    if panoptic is None:
        cfg['num_classes'] = num_classes
    else:
        cfg['num_things_classes'], cfg['num_stuff_classes'] = panoptic
    return cfg


def share_weights(ref, ours, seed=0):
    """Random weights in ``ref``, loaded into ``ours`` through the legacy-key hook."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.1))
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected


def build_seg_pair(num_classes=5, encoder=True, seed=0):
    from mmseg.models.decode_heads import MaskFormerHead as MMSegMaskFormerHead
    with DefaultScope.overwrite_default_scope('mmseg'):
        ref = MMSegMaskFormerHead(**ConfigDict(head_cfg(num_classes, encoder, ours=False)))
    ours = MaskFormerHead(**head_cfg(num_classes, encoder, ours=True))
    share_weights(ref, ours, seed)
    return ref, ours


def build_det_pair(things=3, stuff=2, encoder=True, seed=0):
    from mmdet.models.dense_heads import MaskFormerHead as MMDetMaskFormerHead
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetMaskFormerHead(
            **ConfigDict(head_cfg(None, encoder, ours=False, panoptic=(things, stuff))))
    ours = MaskFormerHead(**head_cfg(None, encoder, ours=True, panoptic=(things, stuff)))
    share_weights(ref, ours, seed)
    return ref, ours


def feats(batch=2, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, c in enumerate(IN_CHANNELS):
        s = IMG // 2**(i + 2)
        out.append(torch.randn(batch, c, s, s, generator=g).requires_grad_(requires_grad))
    return out


def seg_samples(num_classes=5, batch=2, seed=0, ignore_frac=0.1, all_ignored_last=False):
    """mmseg samples with blocky label maps (a few classes each, some ignored pixels)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batch):
        coarse = torch.randint(0, num_classes, (1, 1, 4, 4), generator=g).float()
        seg = torch.nn.functional.interpolate(coarse, size=(IMG, IMG), mode='nearest')[0].long()
        seg[torch.rand(1, IMG, IMG, generator=g) < ignore_frac] = 255
        if all_ignored_last and b == batch - 1:
            seg[:] = 255  # an image without any target segment
        ds = SegDataSample(
            metainfo=dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG), ori_shape=(IMG, IMG)))
        ds.gt_sem_seg = PixelData(data=seg)
        out.append(ds)
    return out


def det_samples(things=3, stuff=2, batch=2, seed=0, num_insts=(2, 0)):
    """mmdet panoptic samples: instance masks of things plus a stuff label map (255 = void)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batch):
        n = num_insts[b % len(num_insts)]
        coarse = torch.randint(things, things + stuff, (1, 1, 4, 4), generator=g).float()
        sem = torch.nn.functional.interpolate(coarse, size=(IMG, IMG), mode='nearest')[0].long()
        masks = torch.zeros(n, IMG, IMG, dtype=torch.uint8)
        for i in range(n):
            y, x = torch.randint(0, IMG - 20, (2, ), generator=g).tolist()
            masks[i, y:y + 16, x:x + 18] = 1
            sem[0][masks[i].bool()] = 255  # things are void in the stuff map (as COCO's)
        ds = DetDataSample(
            metainfo=dict(
                img_shape=(IMG, IMG),
                batch_input_shape=(IMG, IMG),
                ori_shape=(IMG, IMG),
                pad_shape=(IMG, IMG)))
        ds.gt_instances = InstanceData(
            labels=torch.randint(0, things, (n, ), generator=g),
            masks=BitmapMasks(masks.numpy(), IMG, IMG))
        ds.gt_sem_seg = PixelData(sem_seg=sem)
        out.append(ds)
    return out


@pytest.fixture
def fresh():
    """Deep copies, since mmseg's head writes into the samples' metainfo."""
    return copy.deepcopy
