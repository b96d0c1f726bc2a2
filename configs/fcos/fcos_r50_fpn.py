# FCOS R50-caffe FPN, GN head, 1x COCO (Tian et al., ICCV 2019) with mmext.FCOSHead.
# Mirrors mmdet's fcos_r50-caffe_fpn_gn-head_1x_coco.py (published: 36.6 box AP), inheriting
# mmdet's dataset, schedule and runtime bases.
#   python tools/train.py configs/fcos/fcos_r50_fpn.py
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/models/fcos_r50-caffe_fpn.py',
]
# Lets mmdet's own tools/train.py run this file too.
custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

# mmdet's COCO dataset, plus clear errors for empty/mismatched annotation files and a count of
# the boxes it drops (mmext/datasets/coco.py).
train_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
test_dataloader = val_dataloader

# 500 iterations of constant warm-up at lr/3, then steps at epochs 8 and 11.
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(lr=0.01),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
# 8 GPUs x 2 images; --auto-scale-lr rescales for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
