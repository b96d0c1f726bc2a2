# Deformable DETR with iterative bounding-box refinement (appendix A.4), R50, 50 epochs on COCO,
# with mmext's modules.  Mirrors mmdet's config of the same name (published: 46.2 box AP).
_base_ = './deformable-detr_r50_16xb2-50e_coco.py'
model = dict(with_box_refine=True)
