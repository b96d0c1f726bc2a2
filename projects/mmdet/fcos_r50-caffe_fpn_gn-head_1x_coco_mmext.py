# An mmdet user's config: mmdet's own FCOS 1x config and default scope, with mmext's FCOSHead.
# Works with mmdet's tools/train.py as well as mmext's.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)

# The inherited model dict carries _scope_='mmdet': name our head with its scope explicitly.
# Loss types stay unprefixed, as in mmdet: they are built in mmdet's scope.
model = dict(bbox_head=dict(type='mmext.FCOSHead'))

# mmext's Runner: mmengine's, plus distributed training on CPU-only machines (gloo).
runner_type = 'mmext.Runner'
