# scikit-learn's bundled handwritten digits (mmext.DigitsDataset): 1,438 train / 359 held-out
# val images (stratified 80/20 split, seed 0), upsampled bilinearly from 8x8 to `image_size`.
# In memory, nothing downloaded; the pipeline starts at the array (no LoadImageFromFile).
image_size = 32
digits_cfg = dict(image_size=image_size, val_fraction=0.2, seed=0, channels=1)

data_preprocessor = dict(  # merged into `model` by the Runner
    type='mmpretrain.ClsDataPreprocessor',
    num_classes=10,
    mean=[77.9],  # grey-level statistics of the training split at 32x32
    std=[82.5],
    to_rgb=False)

train_pipeline = [
    # small random shifts: the only augmentation a digit tolerates (no flips)
    dict(type='mmpretrain.RandomCrop', crop_size=image_size, padding=2, pad_val=0),
    dict(type='mmpretrain.PackInputs'),
]
test_pipeline = [dict(type='mmpretrain.PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=0,  # in-memory data: worker processes would only cost start-up time
    dataset=dict(type='mmext.DigitsDataset', split='train', pipeline=train_pipeline, **digits_cfg),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    dataset=dict(
        type='mmext.DigitsDataset',
        split='val',
        pipeline=test_pipeline,
        test_mode=True,
        **digits_cfg),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
