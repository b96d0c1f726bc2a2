# FCOS with the "tricks" (center sampling, GIoU, norm_on_bbox, centerness on the reg tower):
# mirrors mmdet's fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py
# (published: 38.7 box AP).
_base_ = './fcos_r50_fpn.py'

model = dict(
    data_preprocessor=dict(mean=[103.530, 116.280, 123.675]),
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    bbox_head=dict(
        norm_on_bbox=True,
        centerness_on_reg=True,
        dcn_on_last_conv=False,
        center_sampling=True,
        center_sample_radius=1.5,
        conv_bias=True,
        loss_bbox=dict(type='mmdet.GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.6)))

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3.0, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
optim_wrapper = dict(clip_grad=None)
