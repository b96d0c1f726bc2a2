# An mmseg user's config: mmseg's FCN on ADE20K in mmseg's default scope, run by mmext's Runner
# (mmengine's Runner plus CPU distributed training).  MaskFormer, the Dice loss and the Swin/ViT
# backbones join this project as they land in mmext.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
runner_type = 'mmext.Runner'
