# FCOS (mmext.FCOSHead) trained from scratch on NEON tree crowns (the deepforest wheel's crops) on
# 2 CPU cores: trained on 400 px tiles of the Yellowstone training part, validated on the whole
# validation part by a sliding window (mmext.SlidingWindowDetector: the same tiles, NMS across
# them). The detector is the shapes demo's half-width ResNet-18 + FPN (strides 8-64), one class;
# crowns are 8-108 px (median 42). 40 epochs (640 iterations) took 981 s on 2 shared CPU cores
# on 2026-12-07; results (poor: val bbox mAP 0.060, precision/recall@0.4 0.43/0.65) in
# configs/fcos/README.md.
_base_ = ['../_base_/det_runtime.py', '../_base_/datasets/neon_trees.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

max_epochs = 40

detector = dict(
    type='mmdet.FCOS',
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        base_channels=32,  # half width: channels 32-256
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # from scratch: nothing may be downloaded
    neck=dict(
        type='mmdet.FPN',
        in_channels=[32, 64, 128, 256],
        out_channels=64,
        start_level=1,
        add_extra_convs='on_output',  # P6 from P5
        num_outs=4,
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='mmext.FCOSHead',
        num_classes=1,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        strides=[8, 16, 32, 64],
        regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)),
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        center_sampling=True,
        center_sample_radius=1.5,
        norm_on_bbox=True,
        centerness_on_reg=True,
        conv_bias=True,
        bbox_coder=dict(type='mmdet.DistancePointBBoxCoder'),
        loss_cls=dict(
            type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='mmdet.GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=300))
# training: the detector's loss on tiles; validation/test: whole regions by tiles
model = dict(
    type='mmext.SlidingWindowDetector',
    detector=detector,
    tile_size={{_base_.tile_size}},
    overlap={{_base_.overlap}},
    merge=dict(type='nms', iou_threshold=0.5),
    max_per_img=1000,
    batch_tiles=4)

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=2e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)

default_hooks = dict(
    logger=dict(interval=5), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_last=True))
randomness = dict(seed=0)
