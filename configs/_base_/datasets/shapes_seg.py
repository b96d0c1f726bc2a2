# The embedded shapes segmentation dataset (mmext/datasets/shapes_seg.py): 400 train / 100 val
# images of 64x64 px with per-pixel class maps (0 = background, 1..4 = circle, square, triangle,
# cross), generated under data/shapes_seg/ the first time a dataset is built.  Read with
# reduce_zero_label=False: 5 classes, background included (ADE20K-style reduce_zero_label=True
# would ignore background and keep the 4 shapes).  Scored by mmseg's IoUMetric.
data_root = 'data/shapes_seg/'
# The same generator parameters for every split: the dataset is generated once from them.
shapes_cfg = dict(num_train=400, num_val=100, img_size=64, seed=0)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.LoadAnnotations', reduce_zero_label=False),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='mmseg.PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.LoadAnnotations', reduce_zero_label=False),
    dict(type='mmseg.PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='mmext.ShapesSegDataset',
        data_root=data_root,
        shapes_cfg=shapes_cfg,
        reduce_zero_label=False,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmext.ShapesSegDataset',
        data_root=data_root,
        shapes_cfg=shapes_cfg,
        reduce_zero_label=False,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='mmseg.IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
