# FCOS (Tian et al., ICCV 2019) with a Swin-T backbone (Liu et al., ICCV 2021), FPN, GN head, 1x
# COCO.  mmext.SwinTransformer feeds strides 8/16/32 (192/384/768 channels) to mmdet's FPN, which
# adds P6/P7; the head is mmext.FCOSHead.  Optimiser as mmdet's Swin-T detectors (AdamW, no decay
# on norms and position bias tables).  Run:
#   python tools/train.py configs/swin/fcos_swin-t-p4-w7_fpn_1x_coco.py
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/models/fcos_r50-caffe_fpn.py',
]
custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

# ImageNet-1k Swin-T in mmpretrain's key layout (loads as is); an official/timm checkpoint works
# after tools/model_converters/swin_to_mmext.py.
pretrained = ('https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/'
              'swin_tiny_patch4_window7_224-160bb0a5.pth')
model = dict(
    data_preprocessor=dict(  # RGB, ImageNet statistics: what Swin was pre-trained on
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='mmext.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),  # only what the FPN uses: unused outputs would get no gradient
        pad_small_map=True,  # detection: any image size, small maps padded to a window
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.)
    }),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
# 8 GPUs x 2 images; --auto-scale-lr rescales for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
