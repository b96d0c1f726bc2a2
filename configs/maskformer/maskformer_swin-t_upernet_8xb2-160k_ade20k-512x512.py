# MaskFormer Swin-T on ADE20K-150, 512x512, 160k iterations (Cheng et al., NeurIPS 2021;
# published: 46.7 mIoU single-scale; mmseg's run: 46.69) with mmext.SwinTransformer (mmext's own;
# mmpretrain-compatible keys) and mmext.MaskFormerHead.  Optimiser/schedule follow mmseg's
# maskformer_swin-t_upernet_8xb2-160k_ade20k-512x512.py (AdamW 6e-5, wd 0.01, linear warm-up
# 1500 iters, poly decay; no weight decay on norms, relative position tables and queries).
# ImageNet-1k weights: set init_cfg=dict(type='Pretrained', checkpoint=CKPT, prefix='backbone.')
# with an mmpretrain swin-tiny checkpoint (or an official/timm one converted by
# tools/model_converters/swin_to_mmext.py); left None here so building never downloads.
_base_ = ['./maskformer_r50-d32_8xb2-160k_ade20k-512x512.py']

depths = [2, 2, 6, 2]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.SwinTransformer',
        arch='tiny',  # embed_dims 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24)
        img_size=224,
        patch_size=4,
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        pad_small_map=True,  # segmentation inputs: maps smaller than a window are padded
        norm_cfg=dict(type='LN'),
        init_cfg=None),
    decode_head=dict(in_channels=[96, 192, 384, 768]))

backbone_norm_multi = dict(lr_mult=1.0, decay_mult=0.0)
custom_keys = {
    'backbone': dict(lr_mult=1.0),
    'backbone.patch_embed.norm': backbone_norm_multi,
    'backbone.norm': backbone_norm_multi,
    'relative_position_bias_table': dict(lr_mult=1.0, decay_mult=0.0),
    'query_embed': dict(decay_mult=0.0),
}
custom_keys.update({
    f'backbone.stages.{stage_id}.blocks.{block_id}.norm': backbone_norm_multi
    for stage_id, num_blocks in enumerate(depths)
    for block_id in range(num_blocks)
})
custom_keys.update({
    f'backbone.stages.{stage_id}.downsample.norm': backbone_norm_multi
    for stage_id in range(len(depths) - 1)
})
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(custom_keys=custom_keys))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]
