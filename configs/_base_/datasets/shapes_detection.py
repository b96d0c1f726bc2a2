# The embedded shapes detection dataset (mmext/datasets/shapes.py): 800 train / 200 val images of
# 128x128 px, 4 classes, generated under data/shapes/ the first time a dataset is built.
# COCO format, read by mmdet's CocoDataset (with mmext's checks) and scored by mmdet's CocoMetric.
data_root = 'data/shapes/'
# The same generator parameters for every split: the dataset is generated once from them.
shapes_cfg = dict(num_train=800, num_val=200, img_size=128, seed=0)
img_scale = (128, 128)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(type='mmdet.PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='mmext.ShapesCocoDataset',
        data_root=data_root,
        shapes_cfg=shapes_cfg,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),  # images without objects teach "background"
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmext.ShapesCocoDataset',
        data_root=data_root,
        shapes_cfg=shapes_cfg,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='mmdet.CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    classwise=True)
test_evaluator = val_evaluator
