# Swin-T on ImageNet-1k (Liu et al., ICCV 2021) with mmext.SwinTransformer: mmpretrain's
# swin-tiny_16xb64_in1k.py (published 81.18 top-1) with only the backbone type changed.  Keys are
# mmpretrain's, so its Swin-T checkpoints load unchanged.
# Run: python tools/train.py configs/swin/swin-tiny_16xb64_in1k.py
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

# The inherited model dict carries _scope_='mmpretrain': name our backbone with its scope.
# arch='tiny', img_size=224 and drop_path_rate=0.2 are inherited and mean the same to ours.
model = dict(backbone=dict(type='mmext.SwinTransformer'))
