# An mmdet user's config: mmdet's DINO-4scale R50 12e config and default scope, with mmext's DINO
# (its DINO decoder, contrastive denoising query generator and DINOHead) and mmext's batched
# HungarianAssigner.  State-dict keys are mmdet's, so mmdet DINO checkpoints load unchanged.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)

# The inherited model dict carries _scope_='mmdet': name our parts with their scope.
model = dict(
    type='mmext.DINO',
    bbox_head=dict(type='mmext.DINOHead'),
    train_cfg=dict(assigner=dict(type='mmext.HungarianAssigner')))

runner_type = 'mmext.Runner'
