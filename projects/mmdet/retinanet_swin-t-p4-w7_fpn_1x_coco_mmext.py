# An mmdet user's config: mmdet's own RetinaNet Swin-T 1x config and default scope, with
# mmext.SwinTransformer as the backbone.  Works with mmdet's tools/train.py as well as mmext's.
_base_ = 'mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)

# mmdet's Swin takes keys ours does not (patch_norm, convert_weights): replace the dict.
# Our keys are mmpretrain's/mmdet's, so mmpretrain's ImageNet Swin-T loads without conversion.
pretrained = ('https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/'
              'swin_tiny_patch4_window7_224-160bb0a5.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.SwinTransformer',  # the inherited dict is in mmdet's scope: prefix ours
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        pad_small_map=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

runner_type = 'mmext.Runner'
