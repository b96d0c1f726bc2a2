# DETR R50, 150 epochs on COCO (Carion et al., ECCV 2020) with mmext's DETR, Transformer and
# DETRHead.  Mirrors mmdet's configs/detr/detr_r50_8xb2-150e_coco.py (published: 39.9 box AP),
# inheriting mmdet's dataset and runtime bases; mmdet DETR checkpoints load unchanged (same keys).
# Run: python tools/train.py configs/detr/detr_r50_8xb2-150e_coco.py
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
]
# Lets mmdet's own tools/train.py run this file too.
custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

model = dict(
    type='DETR',  # mmext.DETR: builds its encoder/decoder/positional encoding from mmext
    num_queries=100,
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='mmdet.ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='mmdet.ChannelMapper',  # 1x1 projection of C5 to the Transformer width
        in_channels=[2048],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(  # mmext.DetrTransformerEncoder
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=2048,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True)))),
    decoder=dict(  # mmext.DetrTransformerDecoder
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            cross_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=2048,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=128, normalize=True),  # mmext.SinePositionalEncoding
    bbox_head=dict(
        type='DETRHead',  # mmext.DETRHead
        num_classes=80,
        embed_dims=256,
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            bg_cls_weight=0.1,  # weight of "no object" (DETR's eos_coef)
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=5.0),
        loss_iou=dict(type='mmdet.GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            # mmext.HungarianAssigner (default scope mmext): batched costs, exact solver
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))

# DETR's augmentation: flip, then either a multi-scale resize or resize -> random crop -> resize.
_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
           (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
# mmcv's RandomChoiceResize wrapping mmdet's Resize (which also rescales the boxes)
_resize = dict(resize_type='mmdet.Resize')
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True, **_resize)],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True,
                            **_resize),
                        dict(
                            type='mmdet.RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True, **_resize)
                    ]]),
    dict(type='mmdet.PackDetInputs')
]
# mmdet's COCO dataset, plus clear errors for empty/mismatched annotation files (mmext/datasets).
train_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
test_dataloader = val_dataloader

# AdamW, backbone at 0.1x lr, gradient clipping at 0.1 (Sec. 4 / A.4 of the paper).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))

max_epochs = 150
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[100], gamma=0.1)
]
# 8 GPUs x 2 images; --auto-scale-lr rescales for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
