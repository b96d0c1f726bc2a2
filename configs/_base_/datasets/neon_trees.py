# NEON tree crowns (mmext/datasets/neon_trees.py): the airborne RGB crops of the deepforest wheel
# (installed by tools/setup_env.sh; pip install --no-deps deepforest==2.1.0), 10 cm pixels, one
# class. Training: 400 px tiles with 120 px overlap (the largest crown is 108 px, so each tree is
# whole in some tile) of the training part of the two Yellowstone crops; validation: the
# spatially disjoint validation part, whole, through the model's sliding window (same tiles);
# test: the OSBS and SOAP crops of two other sites (cross-site generalisation).
tile_size = 400
overlap = 120

train_pipeline = [
    dict(type='mmext.LoadImageCrop'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    # nadir imagery has no up or left: flips in both directions are valid
    dict(type='mmdet.RandomFlip', prob=[0.5, 0.5], direction=['horizontal', 'vertical']),
    dict(type='mmdet.PackDetInputs')
]
# no resize: the detector sees whole regions at the training resolution, by tiles.  CocoMetric
# has no annotation file here: it reads the ground truth from the 'instances' meta key.
test_pipeline = [
    dict(type='mmext.LoadImageCrop'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'crop',
                   'instances'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='mmext.TiledDataset',
        dataset=dict(type='mmext.NeonTreesDataset', split='train', pipeline=[]),
        tile_size=tile_size,
        overlap=overlap,
        min_visible=0.5,
        empty_tile_rate=0.5,  # of the few tiles without trees
        seed=0,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,  # regions of different sizes, each cut into tiles by the model
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmext.NeonTreesDataset', split='val', test_mode=True, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmext.NeonTreesDataset',
        split=('osbs', 'soap'),
        test_mode=True,
        pipeline=test_pipeline))

# COCO bbox mAP (maxDets up to 1000: a validation region holds up to 159 trees) and DeepForest's
# protocol: box precision and recall at IoU 0.4 of the detections scored 0.1 or more.
val_evaluator = [
    dict(type='mmdet.CocoMetric', metric='bbox', proposal_nums=(100, 300, 1000)),
    dict(type='mmext.BoxPrecisionRecall', iou_threshold=0.4, score_thr=0.1)
]
test_evaluator = val_evaluator
