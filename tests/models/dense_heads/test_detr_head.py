"""Parity of ``mmext.DETRHead`` with ``mmdet.models.dense_heads.DETRHead`` (mmdet 3.3.0).

Both heads share random weights (state dicts copied both ways: keys must be identical) and get
the same decoder outputs for a batch of three images with 3, 0 and 5 boxes of different image
sizes; losses of every decoder layer, parameter gradients and detections must agree.  The
assigner is built from the same config in both heads: mmext's ``HungarianAssigner`` once it is
registered, mmdet's before; both solve the same assignment problem exactly.
"""
import copy

import pytest
import torch
from mmdet.models.dense_heads import DETRHead as MMDetDETRHead
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.dense_heads import DETRHead
from mmext.registry import MODELS

register_all_modules(init_default_scope=False)

C, Q, K, LAYERS = 32, 12, 5, 3
ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='ClassificationCost', weight=1.),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)
    ])
# explicit loss configs: mmdet's DETRHead writes into its default `loss_cls` argument, so a
# second mmdet head built from the defaults would fail
CFG = dict(
    num_classes=K,
    embed_dims=C,
    train_cfg=dict(assigner=ASSIGNER),
    test_cfg=dict(max_per_img=7),
    loss_cls=dict(
        type='CrossEntropyLoss',
        bg_cls_weight=0.1,
        use_sigmoid=False,
        loss_weight=1.0,
        class_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0))
IMG_SHAPES = [(96, 128), (128, 112), (80, 80)]
NUM_GTS = [3, 0, 5]


def make_heads(cfg=CFG, seed=0, ours_cfg=None):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetDETRHead(**copy.deepcopy(cfg))
    ours = DETRHead(**copy.deepcopy(ours_cfg or cfg))
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref, ours


def make_samples(seed=0, num_gts=NUM_GTS):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for (h, w), n in zip(IMG_SHAPES, num_gts):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.6
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.35 + 4
        s = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                scale_factor=(0.5, 0.25),
                ori_shape=(4 * h, 2 * w),
                batch_input_shape=(128, 128)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, K, (n, ), generator=g))
        samples.append(s)
    return samples


def hidden(seed=1, layers=LAYERS):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(layers, len(IMG_SHAPES), Q, C, generator=g)


def compare_losses(ref, ours, samples, x):
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = ref.loss(x_ref, samples)
    got = ours.loss(x_ours, samples)
    assert list(got) == list(expected)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5, msg=k)
    sum(expected.values()).backward()
    sum(got.values()).backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    return got


@pytest.mark.parametrize('assigner', ['HungarianAssigner', 'mmdet.HungarianAssigner'])
def test_losses_and_gradients_match_mmdet(assigner):
    # unscoped: mmext's assigner if registered, else mmdet's; scoped: mmdet's in any case
    ours_cfg = dict(CFG, train_cfg=dict(assigner=dict(ASSIGNER, type=assigner)))
    ref, ours = make_heads(ours_cfg=ours_cfg)
    if assigner.startswith('mmdet.'):
        assert type(ours.assigner).__module__.startswith('mmdet.')
    losses = compare_losses(ref, ours, make_samples(), hidden())
    assert set(losses) == {
        f'{p}loss_{t}'
        for p in ('', 'd0.', 'd1.')
        for t in ('cls', 'bbox', 'iou')
    }
    assert all(v > 0 for v in losses.values())


def test_no_box_in_batch_gives_zero_box_losses_with_gradient():
    ref, ours = make_heads(seed=1)
    losses = compare_losses(ref, ours, make_samples(num_gts=[0, 0, 0]), hidden(2))
    for k, v in losses.items():
        if 'cls' in k:
            assert v > 0
        else:
            assert v == 0 and v.requires_grad


def test_configured_losses_and_sync_avg_factor_match_mmdet():
    cfg = dict(
        CFG,
        sync_cls_avg_factor=True,
        num_reg_fcs=3,
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.3,
            use_sigmoid=False,
            loss_weight=2.0,
            class_weight=0.5),
        loss_bbox=dict(type='L1Loss', loss_weight=3.0),
        loss_iou=dict(type='GIoULoss', loss_weight=1.0))
    ref, ours = make_heads(cfg, seed=2)
    assert ours.bg_cls_weight == ref.bg_cls_weight == 0.3
    compare_losses(ref, ours, make_samples(3), hidden(3))


@pytest.mark.parametrize('loss_cls', [
    dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
    dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)
])
def test_sigmoid_class_loss_variants_match_mmdet(loss_cls):
    # as used by DETR variants: no background logit, sigmoid top-k over (query, class); the
    # quality focal loss targets the IoU of each matched prediction
    cfg = dict(
        CFG,
        loss_cls=loss_cls,
        train_cfg=dict(
            assigner=dict(
                ASSIGNER,
                match_costs=[dict(type='FocalLossCost', weight=2.0)] +
                ASSIGNER['match_costs'][1:])))
    ref, ours = make_heads(cfg, seed=3)
    assert ours.fc_cls.out_features == K
    compare_losses(ref, ours, make_samples(4), hidden(4))
    check_predictions(ref, ours, make_samples(4), hidden(5))


def check_predictions(ref, ours, samples, x):
    with torch.no_grad():
        for rescale in (True, False):
            expected = ref.predict(x, samples, rescale=rescale)
            got = ours.predict(x, samples, rescale=rescale)
            for e, o in zip(expected, got):
                assert len(o) == 7
                torch.testing.assert_close(o.scores, e.scores)
                torch.testing.assert_close(o.labels, e.labels)
                torch.testing.assert_close(o.bboxes, e.bboxes)


def test_predictions_match_mmdet():
    ref, ours = make_heads(seed=4)
    samples = make_samples()
    check_predictions(ref, ours, samples, hidden(6))
    with torch.no_grad():
        _, results = ours.loss_and_predict(hidden(7), samples)
    for r, s in zip(results, samples):  # rescaled to the original image, inside it
        h, w = s.ori_shape
        assert (r.bboxes[:, 0::2] <= w).all() and (r.bboxes[:, 1::2] <= h).all()
        assert (r.bboxes >= 0).all()
        assert torch.all(r.scores[:-1] >= r.scores[1:])


def test_nan_predictions_raise_clear_error():
    _, ours = make_heads()
    cls_scores, bbox_preds = ours(hidden())
    bbox_preds = bbox_preds.detach().clone()
    bbox_preds[1, 0, 3] = float('nan')
    samples = make_samples()
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    with pytest.raises(ValueError, match=r'all_layers_bbox_preds.*decoder layer\(s\) \[1\]'):
        ours.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    cls_scores = cls_scores.detach().clone()
    cls_scores[-1, 2, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='layer_cls_scores'):
        ours.predict_by_feat(cls_scores, bbox_preds, metas)


def test_config_validation_and_registry():
    with pytest.raises(KeyError, match='assigner'):
        DETRHead(num_classes=K, embed_dims=C, train_cfg=dict(foo=1))
    with pytest.raises(ValueError, match='sampler'):
        DETRHead(
            num_classes=K,
            embed_dims=C,
            train_cfg=dict(assigner=ASSIGNER, sampler=dict(type='PseudoSampler')))
    with pytest.raises(TypeError, match='class_weight'):
        DETRHead(
            num_classes=K,
            embed_dims=C,
            loss_cls=dict(type='CrossEntropyLoss', class_weight=[1.0] * K))
    head = MODELS.build(dict(type='DETRHead', **CFG))
    assert isinstance(head, DETRHead)
    # no-object weight is the last entry of the CE class weights
    assert head.loss_cls.class_weight == [1.0] * K + [0.1]
    with DefaultScope.overwrite_default_scope('mmext'):  # an mmext config builds it too
        assert isinstance(MODELS.build(dict(type='DETRHead', **CFG)), DETRHead)


class PerImageOnly:
    """Exposes only ``assign`` of an assigner, so the head matches image by image (through
    ``as_batch_assigner``)."""

    def __init__(self, assigner) -> None:
        self.assign = assigner.assign


@pytest.mark.parametrize('num_gts', [NUM_GTS, [0, 0, 0], [14, 0, 5]])  # 14 > Q boxes
def test_batched_assignment_is_used_and_equals_per_image(num_gts, monkeypatch):
    ref, ours = make_heads(seed=5)
    assert hasattr(ours.assigner, 'assign_batch')
    per_image = copy.deepcopy(ours)
    per_image.assigner = PerImageOnly(per_image.assigner)
    samples, x = make_samples(6, num_gts), hidden(8)

    calls = []
    assign_batch = ours.assigner.assign_batch

    def counting_assign_batch(*args, **kwargs):
        calls.append(len(args[0]))
        return assign_batch(*args, **kwargs)

    def no_assign(*args, **kwargs):
        raise AssertionError('per-image assign called although assign_batch exists')

    monkeypatch.setattr(ours.assigner, 'assign_batch', counting_assign_batch)
    monkeypatch.setattr(ours.assigner, 'assign', no_assign)
    got = compare_losses(ref, ours, samples, x)  # also still equal to mmdet's
    assert calls == [len(IMG_SHAPES)] * LAYERS  # one call per decoder layer, whole batch

    x_ours = x.clone().requires_grad_()
    expected = per_image.loss(x_ours, samples)
    assert list(expected) == list(got)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=k)
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    with torch.no_grad():
        cls_scores, bbox_preds = ours(x[-1])
        for a, b in zip(
                ours.get_targets(cls_scores, bbox_preds, gts, metas),
                per_image.get_targets(cls_scores, bbox_preds, gts, metas)):
            if isinstance(a, torch.Tensor):
                assert a.dtype == b.dtype
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            else:
                assert a == b


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nonfinite_gt_box_raises_naming_the_image(value):
    """The matching would only say 'NaN or inf match cost in image(s) [2]'."""
    _, ours = make_heads()
    samples = make_samples()
    for i, s in enumerate(samples):
        s.set_metainfo(dict(img_path=f'data/{i}.png', img_id=i + 10))
    samples[2].gt_instances.bboxes[3, 0] = value
    with pytest.raises(
            ValueError,
            match=r"DETRHead: ground-truth boxes with NaN or infinite "
            r"coordinates in image 2 of the batch \(img_path='data/2\.png', img_id=12\)"
            r': 1 of 5 box'):
        ours.loss(hidden(), samples)
