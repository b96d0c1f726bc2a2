# Two-stage Deformable DETR with box refinement (mmext.DeformableDETR / DeformableDETRHead) from
# scratch on the embedded shapes dataset (128x128 images, 4 classes; generated under data/shapes/
# on first use), small enough for a CPU: a half-width ResNet-18 (C3-C5 plus one stride-64 level,
# 16x16 + 8x8 + 4x4 + 2x2 = 340 tokens), 3 encoder + 3 decoder layers of width 128, 30 queries.
# Measured results: configs/deformable_detr/README.md.
_base_ = ['../_base_/det_runtime.py', '../_base_/datasets/shapes_detection.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

max_epochs = 36
embed_dims = 128
num_levels = 4

_msda = dict(
    embed_dims=embed_dims, num_heads=8, num_levels=num_levels, num_points=4, batch_first=True)
_ffn = dict(embed_dims=embed_dims, feedforward_channels=512, ffn_drop=0.1)
model = dict(
    type='DeformableDETR',
    num_queries=30,
    num_feature_levels=num_levels,
    with_box_refine=True,
    as_two_stage=True,
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        base_channels=32,  # half width: C3/C4/C5 have 64/128/256 channels
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # from scratch: nothing may be downloaded
    neck=dict(
        type='mmdet.ChannelMapper',
        in_channels=[64, 128, 256],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),  # the 4th level: a stride-2 3x3 conv on C5
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=_msda, ffn_cfg=_ffn)),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, dropout=0.1, batch_first=True),
            cross_attn_cfg=_msda,
            ffn_cfg=_ffn),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type='DeformableDETRHead',
        num_classes=4,
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=5.0),
        loss_iou=dict(type='mmdet.GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=30))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=6)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Deformable DETR's recipe (AdamW 2e-4, clip 0.1, offsets and reference points at 0.1x lr); the
# backbone trains at the full lr as it starts from scratch.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={
        'sampling_offsets': dict(lr_mult=0.1),
        'reference_points': dict(lr_mult=0.1)
    }))
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[int(max_epochs * 5 / 6)],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_last=True))
randomness = dict(seed=0)
