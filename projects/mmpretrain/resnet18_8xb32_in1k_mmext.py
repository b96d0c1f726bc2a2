# An mmpretrain user's config: mmpretrain's ResNet-18 on ImageNet in mmpretrain's default scope,
# run by mmext's Runner (mmengine's Runner plus CPU distributed training).  The Swin/ViT backbones
# and the ITC losses join this project as they land in mmext.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
runner_type = 'mmext.Runner'
