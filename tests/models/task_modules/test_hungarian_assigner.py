"""HungarianAssigner: same assignments as mmdet's, batched == per image, solvers agree; the
batch adapter gives per-image assigners the same results as calling them per image."""
import pytest
import torch
from mmdet.models.task_modules.assigners import HungarianAssigner as MMDetHungarianAssigner
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from test_match_costs import make_image

from mmext.models.task_modules.assigners import (HungarianAssigner, PerImageBatchAssigner,
                                                 as_batch_assigner)
from mmext.models.task_modules.assigners.match_costs import PerImageMatchCost, as_batched_cost
from mmext.registry import TASK_UTILS
from mmext.utils.ext_loader import ext_built

DETR = [
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', box_format='xywh', weight=5.),
    dict(type='IoUCost', iou_mode='giou', weight=2.)
]
DEFORMABLE_DETR = [
    dict(type='FocalLossCost', weight=2.),
    dict(type='BBoxL1Cost', box_format='xywh', weight=5.),
    dict(type='IoUCost', iou_mode='giou', weight=2.)
]
MASKFORMER = [
    dict(type='ClassificationCost', weight=1.),
    dict(type='CrossEntropyLossCost', weight=5., use_sigmoid=True),
    dict(type='DiceCost', weight=5., pred_act=True, eps=1.)
]
STYLES = dict(detr=DETR, deformable_detr=DEFORMABLE_DETR, maskformer=MASKFORMER)
SIZES = [(30, 6), (30, 0), (8, 12), (1, 1), (1, 5), (5, 1), (0, 3)]


def _images(seed, sizes=SIZES):
    g = torch.Generator().manual_seed(seed)
    return [make_image(g, q, n, h=320. + 16 * i, w=480. - 8 * i) for i, (q, n) in enumerate(sizes)]


def _assert_same(a, b):
    assert a.num_gts == b.num_gts and a.max_overlaps is None and b.max_overlaps is None
    assert torch.equal(a.gt_inds, b.gt_inds), (a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    assert a.gt_inds.dtype == b.gt_inds.dtype == a.labels.dtype == torch.long


@pytest.mark.parametrize('style', list(STYLES))
def test_parity_with_mmdet_assigner(style):
    ours = TASK_UTILS.build(dict(type='HungarianAssigner', match_costs=STYLES[style]))
    theirs = MMDetHungarianAssigner(match_costs=STYLES[style])
    for seed in range(3):
        imgs = _images(seed)
        for preds, gts, meta in imgs:
            _assert_same(ours.assign(preds, gts, meta), theirs.assign(preds, gts, meta))
        for a, (preds, gts, meta) in zip(ours.assign_batch(*zip(*imgs)), imgs):
            _assert_same(a, theirs.assign(preds, gts, meta))


def _total_costs(cost, results):
    totals = []
    for b, r in enumerate(results):
        q = (r.gt_inds > 0).nonzero().flatten()
        assert len(q) == min(len(r.gt_inds), r.num_gts)
        assert len(set(r.gt_inds[q].tolist())) == len(q)
        totals.append(cost[b, q, r.gt_inds[q] - 1].sum().item())
    return totals


@pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')
@pytest.mark.parametrize('style', list(STYLES))
def test_solvers_same_total_cost(style):
    """The compiled solver (what 'auto' takes on CPU) and scipy: same optimum everywhere, and
    the same matching on random float costs (unique optimum)."""
    scipy_a = HungarianAssigner(STYLES[style], solver='scipy')
    compiled_a = HungarianAssigner(STYLES[style], solver='compiled')
    auto_a = HungarianAssigner(STYLES[style])
    imgs = _images(7, SIZES + [(40, 40), (12, 30)])
    cost = scipy_a.batch_cost(*zip(*imgs))['cost'].double()
    results = [a.assign_batch(*zip(*imgs)) for a in (scipy_a, compiled_a, auto_a)]
    ref = _total_costs(cost, results[0])
    for got in results[1:]:
        for x, y in zip(ref, _total_costs(cost, got)):
            assert abs(x - y) <= 1e-9 * max(1., abs(x))
        for x, y in zip(results[0], got):
            _assert_same(x, y)


def test_torch_solver_is_deprecated_and_solved_as_auto():
    with pytest.warns(DeprecationWarning, match="solver='torch'"):
        old = HungarianAssigner(DETR, solver='torch')
    assert old.solver == 'auto'
    imgs = _images(2)
    for x, y in zip(
            old.assign_batch(*zip(*imgs)),
            HungarianAssigner(DETR).assign_batch(*zip(*imgs))):
        _assert_same(x, y)


@pytest.mark.parametrize('style', list(STYLES))
def test_batch_adapter_equals_per_image_calls(style):
    """mmdet's per-image HungarianAssigner through as_batch_assigner: exactly its own ``assign``
    image by image (the heads' one target path)."""
    theirs = MMDetHungarianAssigner(match_costs=STYLES[style])
    adapter = as_batch_assigner(theirs)
    assert isinstance(adapter, PerImageBatchAssigner) and adapter.assigner is theirs
    for seed in range(2):
        imgs = _images(seed)
        batch = adapter.assign_batch(*zip(*imgs))
        assert len(batch) == len(imgs)
        for a, (preds, gts, meta) in zip(batch, imgs):
            _assert_same(a, theirs.assign(preds, gts, meta))
    assert adapter.assign_batch([], [], []) == []
    ours = HungarianAssigner(STYLES[style])
    assert as_batch_assigner(ours) is ours  # batch-aware assigners are used as they are


def test_builds_from_mmdet_config_and_falls_back():
    import mmext.models  # noqa: F401  (registers mmext's nodes' contents)
    a = MMDET_TASK_UTILS.build(
        dict(type='mmext.HungarianAssigner', match_costs=DETR + [dict(type='BinaryFocalLossCost')]))
    assert isinstance(a, HungarianAssigner)
    mods = [type(c).__module__ for c in a.match_costs]
    assert all(m.startswith('mmext.') for m in mods[:3]) and mods[3].startswith('mmdet.')
    with pytest.raises(ValueError, match='empty'):
        HungarianAssigner([])
    with pytest.raises(ValueError, match='solver'):
        HungarianAssigner(DETR, solver='gpu')


def test_nonfinite_cost_names_term_and_image():
    a = HungarianAssigner(DETR)
    imgs = _images(3, [(10, 3), (10, 4), (10, 2)])
    imgs[1][0].bboxes[4, 2] = float('nan')
    with pytest.raises(ValueError, match=r'BBoxL1Cost in image\(s\) \[1\]'):
        a.assign_batch(*zip(*imgs))
    imgs = _images(3, [(10, 3), (10, 4)])
    imgs[0][0].scores[2, 0] = float('inf')
    with pytest.raises(ValueError, match=r'ClassificationCost in image\(s\) \[0\]'):
        a.assign(*imgs[0])


def test_foreign_mmdet_term_in_batch():
    """A cost only mmdet has (here forced with the scope prefix) is called per image."""
    cfg = [dict(type='mmdet.FocalLossCost', weight=2.)] + DEFORMABLE_DETR[1:]
    ours, theirs = HungarianAssigner(cfg), MMDetHungarianAssigner(DEFORMABLE_DETR)
    assert type(ours.match_costs[0]).__module__.startswith('mmdet.')
    assert isinstance(as_batched_cost(ours.match_costs[0]), PerImageMatchCost)
    assert as_batched_cost(ours.match_costs[1]) is ours.match_costs[1]
    imgs = _images(5)
    for a, (preds, gts, meta) in zip(ours.assign_batch(*zip(*imgs)), imgs):
        _assert_same(a, theirs.assign(preds, gts, meta))


def test_inputs_with_grad():
    a = HungarianAssigner(DEFORMABLE_DETR)
    preds, gts, meta = _images(4, [(12, 5)])[0]
    preds.scores.requires_grad_(True)
    preds.bboxes.requires_grad_(True)
    ref = MMDetHungarianAssigner(DEFORMABLE_DETR).assign(preds, gts, meta)
    _assert_same(a.assign(preds, gts, meta), ref)
    assert preds.scores.grad is None


def test_empty_batch():
    assert HungarianAssigner(DETR).assign_batch([], [], []) == []


def test_empty_batch_of_targets():
    a = HungarianAssigner(DETR)
    preds, _, meta = _images(0, [(6, 1)])[0]
    gts = InstanceData(labels=torch.zeros(0, dtype=torch.long), bboxes=torch.zeros(0, 4))
    for r in a.assign_batch([preds, preds], [gts, gts], [meta, meta]):
        assert r.num_gts == 0 and (r.gt_inds == 0).all() and (r.labels == -1).all()


def test_drop_in_for_mmdet_detr_head():
    """mmdet's DETRHead trains with ``type='mmext.HungarianAssigner'`` and gets mmdet's losses."""
    from mmdet.models.dense_heads import DETRHead
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    samples = []
    for i, n in enumerate((3, 0, 5)):
        s = DetDataSample(metainfo=dict(img_shape=(320, 480), batch_input_shape=(320, 480)))
        xy = torch.rand(n, 2) * 200
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + 50 + i], -1), labels=torch.randint(0, 5, (n, )))
        samples.append(s)
    hidden = torch.randn(2, 3, 20, 32)  # [layers, images, queries, dims]
    losses = {}
    for scope in ('mmdet', 'mmext'):
        torch.manual_seed(1)
        # A fresh loss_cls each time: DETRHead writes a tensor into its (shared) default dict.
        loss_cls = dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0)
        # mmdet's head names its losses without a scope: build it as an mmdet config would
        with DefaultScope.overwrite_default_scope('mmdet'):
            head = DETRHead(
                num_classes=5,
                embed_dims=32,
                loss_cls=loss_cls,
                train_cfg=dict(assigner=dict(type=f'{scope}.HungarianAssigner', match_costs=DETR)))
            losses[scope] = head.loss(hidden, samples)
    assert type(head.assigner) is HungarianAssigner
    for k, v in losses['mmdet'].items():
        torch.testing.assert_close(losses['mmext'][k], v, atol=1e-6, rtol=0)
