"""Parity of ``mmext.DeformableDETRHead`` with mmdet 3.3.0's ``DeformableDETRHead``.

Both heads share random weights (state dicts copied both ways: keys must be identical) and get
the same decoder outputs and references for three images with 3, 0 and 5 boxes; for the plain
(shared branches, point references), box-refine (one branch pair per layer, box references after
the first layer) and two-stage (one more branch pair, encoder-proposal loss) variants the losses
of every layer, the gradients and the detections must agree.  The focal-loss assigner is built
from the same config: mmext's batched ``HungarianAssigner`` in ours, mmdet's (scipy) in theirs;
both solve the same assignment problem exactly.
"""
import copy

import pytest
import torch
from mmdet.models.dense_heads import DeformableDETRHead as MMDetHead
from mmdet.models.task_modules import HungarianAssigner as MMDetAssigner
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.dense_heads import DeformableDETRHead
from mmext.models.task_modules.assigners import HungarianAssigner
from mmext.registry import MODELS, TASK_UTILS

register_all_modules(init_default_scope=False)

C, Q, K, LAYERS, N_ENC = 32, 12, 5, 3, 40
ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)
    ])
CFG = dict(
    num_classes=K,
    embed_dims=C,
    sync_cls_avg_factor=True,
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0),
    train_cfg=dict(assigner=ASSIGNER),
    test_cfg=dict(max_per_img=7))
# what the detector sets for its three variants
VARIANTS = {
    'plain': dict(share_pred_layer=True, num_pred_layer=LAYERS, as_two_stage=False),
    'refine': dict(share_pred_layer=False, num_pred_layer=LAYERS, as_two_stage=False),
    'two-stage': dict(share_pred_layer=False, num_pred_layer=LAYERS + 1, as_two_stage=True),
}


def make_heads(variant, seed=0):
    cfg = dict(CFG, **VARIANTS[variant])
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetHead(**copy.deepcopy(cfg))
    ours = MODELS.build(dict(type='DeformableDETRHead', **copy.deepcopy(cfg)))
    assert isinstance(ours, DeformableDETRHead) and isinstance(ours.assigner, HungarianAssigner)
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref, ours


def make_samples(seed=0, num_gts=(3, 0, 5)):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    samples = []
    for (h, w), n in zip([(96, 128), (128, 112), (80, 80)], num_gts):
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


def head_inputs(variant, seed=1):
    """Decoder outputs, references and (two-stage) encoder outputs as the detector makes them."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(LAYERS, 3, Q, C, generator=g)
    first_dims = 4 if variant == 'two-stage' else 2
    later_dims = 2 if variant == 'plain' else 4
    refs = [torch.rand(3, Q, first_dims, generator=g) * 0.8 + 0.1]
    refs += [torch.rand(3, Q, later_dims, generator=g) * 0.8 + 0.1 for _ in range(LAYERS)]
    enc_cls = enc_coord = None
    if variant == 'two-stage':
        enc_cls = torch.randn(3, N_ENC, K, generator=g)
        enc_coord = torch.rand(3, N_ENC, 4, generator=g) * 0.8 + 0.1
        enc_coord[1, -5:] = 1.0  # padded cells: sigmoid(inf) proposals
    return hidden, refs, enc_cls, enc_coord


def leaf(t):
    return None if t is None else t.clone().requires_grad_()


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_losses_and_gradients_match_mmdet(variant):
    ref, ours = make_heads(variant)
    samples = make_samples()
    inputs = head_inputs(variant)
    ins_ref = [leaf(inputs[0]), [leaf(r) for r in inputs[1]], leaf(inputs[2]), leaf(inputs[3])]
    ins_ours = [leaf(inputs[0]), [leaf(r) for r in inputs[1]], leaf(inputs[2]), leaf(inputs[3])]
    expected = ref.loss(*ins_ref, samples)
    got = ours.loss(*ins_ours, samples)
    keys = [f'{p}loss_{t}' for p in ('', 'd0.', 'd1.') for t in ('cls', 'bbox', 'iou')]
    if variant == 'two-stage':
        keys += ['enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou']
    assert list(got) == list(expected) == keys
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5, msg=k)
        assert got[k] > 0, k
    sum(expected.values()).backward()
    sum(got.values()).backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    pairs = [(ins_ours[0], ins_ref[0])] + list(zip(ins_ours[1], ins_ref[1]))
    if variant == 'two-stage':
        pairs += [(ins_ours[2], ins_ref[2]), (ins_ours[3], ins_ref[3])]
    for o, e in pairs:
        if e.grad is None:
            assert o.grad is None
        else:
            torch.testing.assert_close(o.grad, e.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_predictions_match_mmdet(variant):
    ref, ours = make_heads(variant, seed=2)
    samples = make_samples(1)
    hidden, refs, _, _ = head_inputs(variant, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(ours(hidden, refs), ref(hidden, refs), rtol=0, atol=1e-6)
        for rescale in (True, False):
            expected = ref.predict(hidden, refs, samples, rescale=rescale)
            got = ours.predict(hidden, refs, samples, rescale=rescale)
            for e, o in zip(expected, got):
                assert len(o) == 7
                for key in ('scores', 'labels', 'bboxes'):
                    torch.testing.assert_close(o[key], e[key], msg=key)
        losses, results = ours.loss_and_predict(hidden, refs, None, None, samples)
    assert 'loss_cls' in losses and len(results) == 3


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_init_weights_match_mmdet(variant):
    cfg = dict(CFG, **VARIANTS[variant])
    torch.manual_seed(7)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetHead(**copy.deepcopy(cfg))
    torch.manual_seed(7)
    ours = DeformableDETRHead(**copy.deepcopy(cfg))
    ref.init_weights()
    ours.init_weights()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, rtol=0, atol=0, msg=k)
    shared = variant == 'plain'
    assert (ours.cls_branches[0] is ours.cls_branches[1]) == shared
    assert len(ours.reg_branches) == VARIANTS[variant]['num_pred_layer']
    assert torch.all(ours.cls_branches[1].bias == ours.cls_branches[0].bias)


def test_same_matching_as_mmdet_assigner():
    """mmext's batched assigner and mmdet's scipy one give identical assignments on the
    focal-loss costs Deformable DETR uses (generic inputs: no ties)."""
    ref = MMDetAssigner(**{k: v for k, v in ASSIGNER.items() if k != 'type'})
    ours = TASK_UTILS.build(dict(ASSIGNER, type='mmext.HungarianAssigner'))
    g = torch.Generator().manual_seed(0)
    samples = make_samples(5, num_gts=(4, 0, 9))
    for s in samples:
        h, w = s.img_shape
        pred = InstanceData(
            scores=torch.randn(30, K, generator=g),
            bboxes=torch.rand(30, 4, generator=g).sort(-1)[0] * torch.tensor([w, h, w, h]))
        e = ref.assign(pred, s.gt_instances, s.metainfo)
        o = ours.assign(pred, s.gt_instances, s.metainfo)
        assert torch.equal(o.gt_inds, e.gt_inds) and torch.equal(o.labels, e.labels)


def test_bad_reference_dims():
    _, ours = make_heads('plain')
    with pytest.raises(ValueError, match='2 .x, y. or 4'):
        ours.forward_layer(0, torch.randn(1, 2, C), torch.rand(1, 2, 3))
