# Demo: a small ViT (mmext.VisionTransformer) trained from scratch on scikit-learn's bundled
# handwritten digits, upsampled 8x8 -> 32x32 and cut into 8x8 patches (a 4x4 grid + class token),
# classified by mmpretrain's ImageClassifier / LinearClsHead and scored by mmpretrain's Accuracy
# on the held-out 20 % split.  Runs on 2 CPU cores in a few minutes:
#     python tools/train.py configs/vit/vit-tiny-p8_digits-32_demo.py
_base_ = ['mmpretrain::_base_/default_runtime.py', '../_base_/datasets/digits.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

max_epochs = 40
embed_dims = 96

model = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(
        type='mmext.VisionTransformer',
        # a "tiny" ViT shrunk to the data: 4 layers of 96 channels, 3 heads
        arch=dict(
            embed_dims=embed_dims, num_layers=4, num_heads=3, feedforward_channels=2 * embed_dims),
        img_size=32,
        patch_size=8,
        in_channels=1,
        out_type='avg_featmap',  # mean of the patch tokens: steadier than the class token
        drop_path_rate=0.1,
        init_cfg=None),  # from scratch: nothing may be downloaded
    neck=None,
    head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=10,
        in_channels=embed_dims,
        loss=dict(type='mmpretrain.LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.),
            '.pos_embed': dict(decay_mult=0.)
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=3,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 3,
        eta_min=1e-5,
        by_epoch=True,
        begin=3,
        end=max_epochs)
]
auto_scale_lr = dict(enable=False, base_batch_size=64)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1, save_last=True))
randomness = dict(seed=0, deterministic=False)
