# DETR (mmext.DETR / DETRHead) from scratch on the embedded shapes dataset (128x128 images,
# 4 classes; generated under data/shapes/ on first use): a half-width ResNet-18 C5 map (4x4 tokens),
# 3 encoder + 3 decoder layers of width 128 and 20 queries, so that it runs on a CPU.
# NOTE: a smoke/plumbing demo, NOT a useful detector: trained from scratch it stays at bbox mAP
# ~0.001 after 100 epochs (28 min on 2 CPU cores), and no config-only change we tried (finer C4/C3
# tokens, focal loss, no dropout, higher or per-backbone lr, batch 4, 12-100 queries, even a
# backbone trained by the FCOS demo) left the plateau where the decoder's cross-attention stays
# near uniform.  Measurements, the list of experiments and the diagnosis: configs/detr/README.md.
_base_ = ['../_base_/det_runtime.py', '../_base_/datasets/shapes_detection.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

max_epochs = 100
embed_dims = 128

_attn = dict(embed_dims=embed_dims, num_heads=8, dropout=0.1, batch_first=True)
_ffn = dict(
    embed_dims=embed_dims,
    feedforward_channels=512,
    num_fcs=2,
    ffn_drop=0.1,
    act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    type='DETR',
    num_queries=20,
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        base_channels=32,  # half width: C5 has 256 channels
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # from scratch: nothing may be downloaded
    neck=dict(
        type='mmdet.ChannelMapper',
        in_channels=[256],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=_attn, ffn_cfg=_ffn)),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(self_attn_cfg=_attn, cross_attn_cfg=_attn, ffn_cfg=_ffn),
        return_intermediate=True),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    bbox_head=dict(
        type='DETRHead',
        num_classes=4,
        embed_dims=embed_dims,
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=5.0),
        loss_iou=dict(type='mmdet.GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=20))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# DETR's recipe (AdamW, clipping at 0.1), a higher lr as everything trains from scratch.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[int(max_epochs * 2 / 3)],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_last=True))
randomness = dict(seed=0)
