# An mmdet user's config: mmdet's DETR 150e config and default scope, with mmext's DETR (its own
# transformer, sine positional encoding and DETRHead) and mmext's batched HungarianAssigner.
# State-dict keys are mmdet's, so mmdet DETR checkpoints load unchanged.
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)

# The inherited model dict carries _scope_='mmdet': name our parts with their scope.
model = dict(
    type='mmext.DETR',
    bbox_head=dict(type='mmext.DETRHead'),
    train_cfg=dict(assigner=dict(type='mmext.HungarianAssigner')))

runner_type = 'mmext.Runner'
