"""Parity of ``mmext.DINOHead`` with ``mmdet.models.dense_heads.DINOHead`` (mmdet 3.3.0).

Both heads share random weights and get the same decoder outputs and references (denoising +
matching queries), encoder proposals and ``dn_meta`` for a batch of three images with 3, 0 and 5
boxes: every loss (matching part of every layer, encoder proposals, denoising part of every
layer), the gradients of the head and of its inputs (including the look-forward-twice
references) and the detections must agree.  Our head matches with mmext's batched
``HungarianAssigner``, mmdet's with its own; both solve the same problem exactly.
"""
import copy

import pytest
import torch
from mmdet.models.dense_heads import DINOHead as MMDetDINOHead
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.dense_heads import DINOHead
from mmext.models.task_modules import HungarianAssigner

register_all_modules(init_default_scope=False)

C, K, Q, LAYERS = 32, 5, 9, 3
IMG_SHAPES = [(96, 128), (128, 112), (80, 80)]
NUM_GTS = [3, 0, 5]


def head_cfg(assigner_type, loss_cls=None):
    return dict(
        num_classes=K,
        embed_dims=C,
        num_pred_layer=LAYERS + 1,
        as_two_stage=True,
        sync_cls_avg_factor=True,
        loss_cls=loss_cls
        or dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        train_cfg=dict(
            assigner=dict(
                type=assigner_type,
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=7))


def make_heads(seed=0, loss_cls=None):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetDINOHead(**head_cfg('HungarianAssigner', loss_cls))
    ours = DINOHead(**head_cfg('mmext.HungarianAssigner', loss_cls))
    assert type(ours.assigner) is HungarianAssigner
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


def make_inputs(num_dn, seed=1):
    """Decoder outputs [L, B, D + Q, C], L + 1 references, top-Q encoder proposals."""
    g = torch.Generator().manual_seed(seed)
    total = num_dn + Q
    return dict(
        hidden_states=torch.randn(LAYERS, 3, total, C, generator=g),
        references=torch.rand(LAYERS + 1, 3, total, 4, generator=g) * 0.6 + 0.2,
        enc_outputs_class=torch.randn(3, Q, K, generator=g),
        enc_outputs_coord=torch.rand(3, Q, 4, generator=g) * 0.6 + 0.2)


def leaf_copies(inputs):
    return {k: v.clone().requires_grad_() for k, v in inputs.items()}


@pytest.mark.parametrize('num_groups', [1, 3])
@pytest.mark.parametrize(
    'loss_cls',
    [None, dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)])
def test_losses_gradients_match_mmdet(num_groups, loss_cls):
    ref, ours = make_heads(loss_cls=loss_cls)
    samples = make_samples()
    max_gts = max(NUM_GTS)
    dn_meta = dict(num_denoising_queries=2 * num_groups * max_gts, num_denoising_groups=num_groups)
    inputs = make_inputs(dn_meta['num_denoising_queries'])
    x_ref, x_ours = leaf_copies(inputs), leaf_copies(inputs)
    expected = ref.loss(x_ref['hidden_states'], list(x_ref['references']),
                        x_ref['enc_outputs_class'], x_ref['enc_outputs_coord'], samples, dn_meta)
    got = ours.loss(x_ours['hidden_states'], list(x_ours['references']),
                    x_ours['enc_outputs_class'], x_ours['enc_outputs_coord'], samples, dn_meta)
    assert list(got) == list(expected)
    assert {'enc_loss_cls', 'dn_loss_cls', 'd0.dn_loss_iou', 'd1.loss_bbox'} <= set(got)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-5, msg=k)
    sum(expected.values()).backward()
    sum(got.values()).backward()
    for k in inputs:
        torch.testing.assert_close(x_ours[k].grad, x_ref[k].grad, rtol=0, atol=1e-5, msg=k)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_dn_targets_match_mmdet():
    ref, ours = make_heads()
    samples = make_samples()
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    dn_meta = dict(num_denoising_queries=2 * 2 * 5, num_denoising_groups=2)
    labels, label_weights, bbox_targets, bbox_weights, num_pos, num_neg = ours.get_dn_targets(
        gts, metas, dn_meta)
    expected = ref.get_dn_targets(gts, metas, dn_meta)
    for got, exp in zip((labels, label_weights, bbox_targets, bbox_weights), expected[:4]):
        torch.testing.assert_close(got, torch.stack(exp), rtol=0, atol=0)
    assert (num_pos, num_neg) == expected[4:] == (16, 16)
    # group 1 of image 0: positive queries 10-12 reconstruct gts 0-2, 13-14 padding, 15-17 negative
    assert labels[0, 10:13].tolist() == gts[0].labels.tolist()
    assert (labels[0, 13:20] == K).all() and (labels[1] == K).all()


def test_without_dn_queries_and_predict():
    ref, ours = make_heads(seed=2)
    samples = make_samples(seed=3)
    inputs = make_inputs(0, seed=4)
    # no denoising part (dn_meta None, e.g. mmdet's eval-mode outputs): matching + encoder losses
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    outs = ours(inputs['hidden_states'], list(inputs['references']))
    got = ours.loss_by_feat(*outs, inputs['enc_outputs_class'], inputs['enc_outputs_coord'], gts,
                            metas, None)
    assert not any('dn_' in k for k in got) and 'enc_loss_cls' in got
    # mmdet's head needs a denoising part: prepend one; the other losses do not depend on it
    dn = make_inputs(10, seed=5)
    dn_meta = dict(num_denoising_queries=10, num_denoising_groups=1)
    hidden = torch.cat([dn['hidden_states'][:, :, :10], inputs['hidden_states']], 2)
    refs = torch.cat([dn['references'][:, :, :10], inputs['references']], 2)
    expected = ref.loss_by_feat(*ref(hidden, list(refs)), inputs['enc_outputs_class'],
                                inputs['enc_outputs_coord'], gts, metas, dn_meta)
    for k in got:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-5, msg=k)

    ours.eval()
    ref.eval()
    with torch.no_grad():
        e = ref.predict(inputs['hidden_states'], list(inputs['references']), copy.deepcopy(samples))
        o = ours.predict(inputs['hidden_states'], list(inputs['references']),
                         copy.deepcopy(samples))
    for a, b in zip(o, e):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
