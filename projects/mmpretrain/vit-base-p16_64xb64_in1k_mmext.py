# An mmpretrain user's config: mmpretrain's ViT-B/16 ImageNet config in mmpretrain's default
# scope, with the backbone swapped for mmext.VisionTransformer (same arguments, same state-dict
# keys, attention through F.scaled_dot_product_attention), run by mmext's Runner.
_base_ = 'mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
runner_type = 'mmext.Runner'

model = dict(backbone=dict(type='mmext.VisionTransformer'))
