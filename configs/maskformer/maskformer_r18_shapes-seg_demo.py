# MaskFormer (mmext.MaskFormerHead in mmseg's EncoderDecoder) from scratch on the embedded shapes
# segmentation dataset (64x64 images, 5 classes incl. background; generated under
# data/shapes_seg/ on first use).  A half-width ResNet-18 (strides 4, 8, 16, 16 with a dilated
# C5), a small FPN pixel decoder, 3 decoder layers of width 64 and 16 queries, so that it trains on
# 2 CPU cores in minutes.  Results and the exact command: configs/maskformer/README.md.
_base_ = ['../_base_/seg_runtime.py', '../_base_/datasets/shapes_seg.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

num_classes = 5
embed_dims = 64
max_iters = 2000
_attn = dict(embed_dims=embed_dims, num_heads=4, attn_drop=0.0, proj_drop=0.0, batch_first=True)
model = dict(
    type='mmseg.EncoderDecoder',
    data_preprocessor=dict(
        type='mmseg.SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(64, 64)),
    backbone=dict(
        type='mmseg.ResNetV1c',
        depth=18,
        base_channels=32,  # half width: 32, 64, 128, 256 channels
        stem_channels=32,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        # C5 dilated at stride 16: the predictor's memory is 4x4 tokens instead of 2x2
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=None),  # from scratch: nothing may be downloaded
    decode_head=dict(
        type='MaskFormerHead',
        in_channels=[32, 64, 128, 256],
        in_index=[0, 1, 2, 3],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        num_classes=num_classes,
        num_queries=16,
        pixel_decoder=dict(
            type='PixelDecoder', norm_cfg=dict(type='GN', num_groups=16),
            act_cfg=dict(type='ReLU')),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
        transformer_decoder=dict(
            num_layers=3,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=_attn,
                cross_attn_cfg=_attn,
                ffn_cfg=dict(
                    embed_dims=embed_dims,
                    feedforward_channels=256,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True)))),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            reduction='mean',
            loss_weight=20.0),
        loss_dice=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='ClassificationCost', weight=1.0),
                    dict(type='FocalLossCost', weight=20.0, binary_input=True),
                    dict(type='DiceCost', weight=1.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler'))),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# MaskFormer's recipe (AdamW, poly decay, backbone lr x0.1 is dropped: it trains from scratch)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=0, power=0.9, begin=100, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', draw=False, interval=50))
randomness = dict(seed=0)
