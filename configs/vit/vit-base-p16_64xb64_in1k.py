# ViT-B/16 on ImageNet-1k (Dosovitskiy et al., ICLR 2021) with mmext.VisionTransformer:
# mmpretrain's vit-base-p16_64xb64_in1k.py (its data pipeline with AutoAugment, AdamW at
# lr 3e-3 for batch 4096, 300 epochs, Mixup, VisionTransformerClsHead) with our backbone.
# Same state-dict keys as mmpretrain's ViT, so mmpretrain ViT-B checkpoints load as they are.
#     python tools/train.py configs/vit/vit-base-p16_64xb64_in1k.py
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

model = dict(
    backbone=dict(
        type='mmext.VisionTransformer', arch='base', img_size=224, patch_size=16, drop_rate=0.1))
