# ITC demo: a dual encoder (a tiny mmext ViT, 4 layers of 96 channels, on 32x32 digits with 8x8
# patches + a 2-layer text transformer over a word-level vocabulary) trained from scratch with
# ALBEF's image-text contrastive loss (momentum encoders, queues, momentum distillation with alpha
# warm-up) on scikit-learn's handwritten digits paired with templated captions.  Evaluated on the
# held-out split: zero-shot classification from the caption prompts (ensembled over all templates)
# and image<->text retrieval R@1/R@5 (class-level relevance: the captions only name the digit).
custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

image_size = 32  # upsampled from 8x8: an 8x8 patch covers 2x2 original pixels
max_epochs = 40
vit_dims = 96
embed_dim = 128

templates = [
    'a handwritten {0}',
    'the digit {1}',
    'a photo of the number {0}',
    'a scan of a handwritten {1}',
    'the number {0} written by hand',
    'a small blurry image of the digit {0}',
    'someone wrote a {1}',
    'a picture of a {1}',
]
class_names = [['zero', '0'], ['one', '1'], ['two', '2'], ['three', '3'], ['four', '4'],
               ['five', '5'], ['six', '6'], ['seven', '7'], ['eight', '8'], ['nine', '9']]

model = dict(
    type='DualEncoderITC',
    # grey-level statistics of the training split at 32 px
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor', mean=[77.9], std=[82.5], to_rgb=False),
    image_encoder=dict(
        type='VisionTransformer',
        # the tiny ViT of configs/vit/vit-tiny-p8_digits-32_demo.py (98.9 % supervised)
        arch=dict(
            embed_dims=vit_dims, num_layers=4, num_heads=3, feedforward_channels=2 * vit_dims),
        img_size=image_size,
        patch_size=8,
        in_channels=1,
        out_type='avg_featmap',  # mean of the patch tokens: steadier than the class token
        drop_path_rate=0.1,
        init_cfg=None),
    text_encoder=dict(type='TextTransformer', embed_dims=128, num_layers=2, num_heads=4),
    tokenizer=dict(type='WordTokenizer', max_length=12),  # vocab built from the prompts
    embed_dim=embed_dim,
    loss=dict(type='ITCLoss', queue_size=1000, temperature=0.07, use_distill=True, alpha=0.4),
    momentum=0.995,
    idx_key='gt_label',  # captions only name the digit: every same-digit pair is a positive
    class_names=class_names,
    templates=templates)

digits_cfg = dict(image_size=image_size, val_fraction=0.2, seed=0, channels=1, templates=templates)
pack = dict(
    type='mmpretrain.PackInputs',
    meta_keys=('sample_idx', 'img_shape', 'ori_shape', 'text', 'image_id'))
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(
        type='DigitsCaptionDataset',
        split='train',
        **digits_cfg,
        pipeline=[
            dict(type='mmpretrain.RandomCrop', crop_size=image_size, padding=2, pad_val=0), pack
        ]),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    dataset=dict(
        type='DigitsCaptionDataset', split='val', test_mode=True, **digits_cfg, pipeline=[pack]),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = [
    dict(type='ZeroShotAccuracy', topk=(1, )),
    dict(type='RetrievalRecall', topk=(1, 5), relevance_key='gt_label'),
]
test_dataloader = val_dataloader
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
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

# ALBEF ramps the distillation weight over the first epoch
custom_hooks = [dict(type='ITCAlphaWarmupHook', module_name='loss_itc')]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(window_size=10, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
