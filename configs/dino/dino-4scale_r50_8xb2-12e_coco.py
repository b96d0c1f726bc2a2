# DINO-4scale R50, 12 epochs on COCO (Zhang et al., ICLR 2023) with mmext's DINO, DINO decoder,
# contrastive denoising query generator, DINOHead and batched HungarianAssigner.  Inherits mmdet's
# configs/dino/dino-4scale_r50_8xb2-12e_coco.py unchanged but for the types (published: 49.0 box
# AP); mmdet DINO checkpoints load unchanged (same keys).
# Run: python tools/train.py configs/dino/dino-4scale_r50_8xb2-12e_coco.py
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

# Lets mmdet's own tools/train.py run this file too.
custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

# The inherited dicts carry _scope_='mmdet': our parts are named with their scope.  Inside
# mmext.DINO, unscoped parts we lack (ResNet, ChannelMapper, losses) are mmdet's.
model = dict(
    type='mmext.DINO',
    bbox_head=dict(type='mmext.DINOHead'),
    train_cfg=dict(assigner=dict(type='mmext.HungarianAssigner')))

# mmdet's COCO dataset, plus clear errors for empty/mismatched annotation files (mmext/datasets).
train_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
test_dataloader = val_dataloader
