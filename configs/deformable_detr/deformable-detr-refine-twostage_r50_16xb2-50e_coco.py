# Two-stage Deformable DETR with iterative bounding-box refinement (appendix A.4), R50, 50 epochs
# on COCO, with mmext's modules.  Mirrors mmdet's config of the same name (published: 47.0 box AP).
_base_ = './deformable-detr-refine_r50_16xb2-50e_coco.py'
model = dict(as_two_stage=True)
