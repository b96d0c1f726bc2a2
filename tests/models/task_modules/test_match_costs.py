"""Match costs: same numbers as mmdet's per image, and batched == per image."""
import pytest
import torch
from mmdet.models.task_modules.assigners import match_cost as mmdet_costs
from mmengine.structures import InstanceData

from mmext.models.task_modules.assigners import MatchBatch
from mmext.registry import TASK_UTILS

NUM_CLASSES, POINTS = 7, 37

CONFIGS = [
    dict(type='ClassificationCost', weight=2.),
    dict(type='FocalLossCost', alpha=0.3, gamma=1.5, eps=1e-8, weight=2.),
    dict(type='FocalLossCost', binary_input=True, weight=3.),
    dict(type='BBoxL1Cost', box_format='xyxy', weight=5.),
    dict(type='BBoxL1Cost', box_format='xywh', weight=5.),
    dict(type='IoUCost', iou_mode='giou', weight=2.),
    dict(type='IoUCost', iou_mode='iou', weight=1.),
    dict(type='CrossEntropyLossCost', use_sigmoid=True, weight=5.),
    dict(type='DiceCost', pred_act=True, eps=1., weight=5.),
    dict(type='DiceCost', pred_act=False, naive_dice=False, weight=1.),
]


def _boxes(n, g, w=640., h=480.):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.7
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.3 + 1
    return torch.cat([xy, xy + wh], -1)


def make_image(g, num_preds=30, num_gts=6, h=480., w=640.):
    preds = InstanceData(
        scores=torch.randn(num_preds, NUM_CLASSES, generator=g),
        bboxes=_boxes(num_preds, g, w, h),
        masks=torch.randn(num_preds, POINTS, generator=g))
    gts = InstanceData(
        labels=torch.randint(0, NUM_CLASSES, (num_gts, ), generator=g),
        bboxes=_boxes(num_gts, g, w, h),
        masks=(torch.rand(num_gts, POINTS, generator=g) > 0.5).long())
    return preds, gts, dict(img_shape=(int(h), int(w)))


@pytest.mark.parametrize('cfg', CONFIGS, ids=lambda c: f"{c['type']}-{len(c)}")
def test_parity_with_mmdet(cfg):
    ours = TASK_UTILS.build(cfg)
    theirs = getattr(mmdet_costs, cfg['type'])(**{k: v for k, v in cfg.items() if k != 'type'})
    assert type(ours).__module__.startswith('mmext.')
    g = torch.Generator().manual_seed(0)
    for num_preds, num_gts in [(30, 6), (5, 9), (1, 1)]:
        preds, gts, meta = make_image(g, num_preds, num_gts)
        a = ours(pred_instances=preds, gt_instances=gts, img_meta=meta)
        b = theirs(pred_instances=preds, gt_instances=gts, img_meta=meta)
        assert a.shape == b.shape == (num_preds, num_gts)
        torch.testing.assert_close(a, b.to(a.dtype), atol=1e-6, rtol=0)


@pytest.mark.parametrize('cfg', CONFIGS, ids=lambda c: f"{c['type']}-{len(c)}")
def test_batched_equals_per_image(cfg):
    cost = TASK_UTILS.build(cfg)
    g = torch.Generator().manual_seed(1)
    imgs = [make_image(g, 20, n, h=300. + 40 * n, w=500. - 30 * n) for n in (4, 0, 7, 1)]
    batch = MatchBatch.from_instances(*zip(*imgs))
    full = cost.weighted_batch_cost(batch)
    assert full.shape == (4, 20, 7)
    for b, (p, gt, m) in enumerate(imgs):
        single = cost(p, gt, m)
        torch.testing.assert_close(full[b, :, :len(gt)], single, atol=1e-6, rtol=0)


def test_config_validation_and_missing_fields():
    with pytest.raises(ValueError, match='box_format'):
        TASK_UTILS.build(dict(type='BBoxL1Cost', box_format='cxcy'))
    with pytest.raises(ValueError, match="use_sigmoid=False is not supported"):
        TASK_UTILS.build(dict(type='CrossEntropyLossCost', use_sigmoid=False))
    preds = InstanceData(scores=torch.randn(3, 4))
    gts = InstanceData(labels=torch.tensor([0, 1]))
    with pytest.raises(KeyError, match='pred_bboxes'):
        TASK_UTILS.build(dict(type='IoUCost'))(preds, gts, dict(img_shape=(10, 10)))


def test_half_precision_iou():
    g = torch.Generator().manual_seed(2)
    preds, gts, meta = make_image(g)
    preds.bboxes, gts.bboxes = preds.bboxes.half() * 50, gts.bboxes.half() * 50  # areas > 65504
    c = TASK_UTILS.build(dict(type='IoUCost'))(preds, gts, meta)
    assert c.dtype == torch.float16 and torch.isfinite(c).all()
