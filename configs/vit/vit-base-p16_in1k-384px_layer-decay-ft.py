# Fine-tuning ViT-B/16 at 384 px from a 224 px checkpoint with layer-wise lr decay
# (mmext.LayerDecayOptimWrapperConstructor).  The 14x14 position-embedding grid of the checkpoint
# is resampled bicubically to 24x24 when it is loaded.  Convert a timm/official checkpoint first:
#     python tools/model_converters/vit_timm_to_mmext.py timm_vit_b16.pth work_dirs/vit-b16.pth
#     python tools/train.py configs/vit/vit-base-p16_in1k-384px_layer-decay-ft.py \
#         --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/vit-b16.pth
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k-384px.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

model = dict(
    backbone=dict(
        type='mmext.VisionTransformer',
        arch='base',
        img_size=384,
        patch_size=16,
        drop_path_rate=0.1,
        # replaces the base's Kaiming list (_delete_): weights come from the file
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='work_dirs/vit-b16.pth')))

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='mmext.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.),
            '.pos_embed': dict(decay_mult=0.)
        }),
    clip_grad=dict(max_norm=1.0))
