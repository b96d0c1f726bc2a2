# An mmdet user's config: mmdet's two-stage Deformable DETR (box refinement) 50e config and default
# scope, with mmext's DeformableDETR (its own deformable Transformer, MultiScaleDeformableAttention,
# sine positional encoding and DeformableDETRHead) and mmext's batched HungarianAssigner.
# State-dict keys are mmdet's, so mmdet Deformable DETR checkpoints load unchanged.
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)

# The inherited model dict carries _scope_='mmdet': name our parts with their scope.
model = dict(
    type='mmext.DeformableDETR',
    bbox_head=dict(type='mmext.DeformableDETRHead'),
    train_cfg=dict(assigner=dict(type='mmext.HungarianAssigner')))

runner_type = 'mmext.Runner'
