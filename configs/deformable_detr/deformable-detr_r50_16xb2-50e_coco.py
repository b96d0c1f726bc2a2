# Deformable DETR R50, 50 epochs on COCO (Zhu et al., ICLR 2021) with mmext's DeformableDETR,
# deformable Transformer, MultiScaleDeformableAttention, DeformableDETRHead and batched
# HungarianAssigner.  Inherits mmdet's config of the same name (model, data, schedule; published:
# 44.3 box AP); mmdet checkpoints load unchanged (same state-dict keys).
# Run: python tools/train.py configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py
_base_ = 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

# The inherited dicts carry _scope_='mmdet': our parts are named with their scope.  The encoder,
# decoder and positional encoding have no type and are built by mmext.DeformableDETR itself.
model = dict(
    type='mmext.DeformableDETR',
    bbox_head=dict(type='mmext.DeformableDETRHead'),
    train_cfg=dict(assigner=dict(type='mmext.HungarianAssigner')))

# mmdet's COCO dataset, plus clear errors for empty/mismatched annotation files (mmext/datasets).
train_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='mmext.CheckedCocoDataset'))
test_dataloader = val_dataloader
