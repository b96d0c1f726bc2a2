"""Parity of ``mmext.MaskFormerHead`` + ``mmext.MaskFormerFusionHead`` with mmdet 3.3's
``MaskFormerHead`` + ``MaskFormerFusionHead`` (panoptic mode).

Shared random weights (mmdet's state dict loads into ours unchanged), the same features and
panoptic targets (thing instances + a stuff map with void): losses of every decoder layer,
gradients, the predicted logits and the panoptic/instance results must agree.
"""
import copy

import pytest
import torch
from conftest import build_det_pair, det_samples, feats
from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead as MMDetFusionHead
from mmdet.utils import register_all_modules as register_det

from mmext.models.seg_heads import MaskFormerFusionHead

register_det(init_default_scope=False)


def test_panoptic_losses_and_gradients_match_mmdet():
    ref, ours = build_det_pair(things=3, stuff=2, encoder=True)
    samples = det_samples(3, 2, batch=3, num_insts=(2, 0, 3))
    x_ref, x_ours = feats(3, requires_grad=True), feats(3, requires_grad=True)
    l_ref = ref.loss(x_ref, copy.deepcopy(samples))
    l_ours = ours.loss(x_ours, copy.deepcopy(samples))
    assert sorted(l_ref) == sorted(l_ours)
    for k in l_ref:
        torch.testing.assert_close(l_ours[k], l_ref[k].reshape(()), atol=1e-5, rtol=1e-5, msg=k)
    sum(l_ref.values()).backward()
    sum(l_ours.values()).backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        q = ref_grads[name.replace('predictor.', '')]
        if q.grad is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
        else:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    for a, b in zip(x_ours, x_ref):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_predicted_logits_match_mmdet():
    ref, ours = build_det_pair(things=3, stuff=2, encoder=False, seed=2)
    ref.eval()
    ours.eval()
    x = feats(2, seed=5)
    samples = det_samples(3, 2, batch=2)
    with torch.no_grad():
        c_ref, m_ref = ref.predict(x, copy.deepcopy(samples))
        c_ours, m_ours = ours.predict(x, copy.deepcopy(samples))
    torch.testing.assert_close(c_ours, c_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m_ours, m_ref, atol=1e-4, rtol=1e-5)


def _logits(seed, q=12, k=5, hw=(40, 48)):
    """Confident class logits (some ∅) and blobby mask logits, so that segments survive."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(2, q, k + 1, generator=g)
    cls[torch.arange(2)[:, None],
        torch.arange(q)[None],
        torch.randint(0, k + 1, (2, q), generator=g)] += 6
    # every coarse cell is owned by one query: mostly disjoint masks, as after training
    owner = torch.randint(0, q, (2, 1, 5, 6), generator=g)
    own = owner == torch.arange(q)[None, :, None, None]
    coarse = torch.where(own, 6.0, -6.0) + torch.randn(2, q, 5, 6, generator=g)
    masks = torch.nn.functional.interpolate(coarse, size=hw, mode='bilinear')
    return cls, masks


@pytest.mark.parametrize('cfg', [
    dict(object_mask_thr=0.8, iou_thr=0.8, filter_low_score=False),
    dict(object_mask_thr=0.5, iou_thr=0.3, filter_low_score=True),
    dict(object_mask_thr=0.2, iou_thr=0.0, filter_low_score=False),
])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_panoptic_and_instance_fusion_match_mmdet(cfg, seed):
    test_cfg = dict(panoptic_on=True, instance_on=True, semantic_on=False, max_per_image=15, **cfg)
    ref = MMDetFusionHead(num_things_classes=3, num_stuff_classes=2, test_cfg=test_cfg)
    ours = MaskFormerFusionHead(num_things_classes=3, num_stuff_classes=2, test_cfg=test_cfg)
    cls, masks = _logits(seed)
    samples = det_samples(3, 2, batch=2)
    for s in samples:
        s.set_metainfo(dict(img_shape=(36, 44), ori_shape=(72, 88)))
    for rescale in (False, True):
        r = ref.predict(cls, masks, samples, rescale=rescale)
        o = ours.predict(cls, masks, samples, rescale=rescale)
        for a, b in zip(r, o):
            assert torch.equal(a['pan_results'].sem_seg, b['pan_results'].sem_seg)
            for key in ('labels', 'scores', 'bboxes', 'masks'):
                torch.testing.assert_close(b['ins_results'].get(key), a['ins_results'].get(key))
    # the test is not vacuous: segments (things and stuff) survive in some images
    ids = torch.cat([x['pan_results'].sem_seg.unique() for x in o])
    assert (ids != 5).any()


def test_fusion_head_has_mmdets_with_loss():
    """mmdet's panoptic fusion heads expose ``with_loss``; ours has no loss, like mmdet's
    MaskFormerFusionHead built without ``loss_panoptic``."""
    ref = MMDetFusionHead(num_things_classes=3, num_stuff_classes=2)
    ours = MaskFormerFusionHead(num_things_classes=3, num_stuff_classes=2)
    assert ours.with_loss is False and ref.with_loss is False
    assert ours.loss() == {}


def test_inside_mmdet_maskformer_detector():
    """mmdet's MaskFormer detector drives our head and fusion head: loss and panoptic predict."""
    from conftest import head_cfg
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope
    cfg = head_cfg(None, encoder=True, ours=True, panoptic=(3, 2))
    cfg['type'] = 'mmext.MaskFormerHead'
    cfg['in_channels'] = [8, 16, 32, 64]
    train_cfg = cfg.pop('train_cfg')
    model_cfg = dict(
        type='MaskFormer',
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=8,
            out_indices=(0, 1, 2, 3),
            norm_cfg=dict(type='BN'),
            init_cfg=None),
        panoptic_head=cfg,
        panoptic_fusion_head=dict(
            type='mmext.MaskFormerFusionHead', num_things_classes=3, num_stuff_classes=2),
        train_cfg=train_cfg,
        test_cfg=dict(
            panoptic_on=True,
            instance_on=True,
            semantic_on=False,
            max_per_image=5,
            object_mask_thr=0.0,
            iou_thr=0.0))
    from mmengine.config import ConfigDict
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(ConfigDict(model_cfg))
    assert type(model.panoptic_head).__module__.startswith('mmext')
    samples = det_samples(3, 2, batch=2)
    imgs = torch.randn(2, 3, 64, 64)
    losses = model.loss(imgs, copy.deepcopy(samples))
    assert {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls'} <= set(losses)
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model.predict(imgs, copy.deepcopy(samples))
    assert out[0].pred_panoptic_seg.sem_seg.shape == (1, 64, 64)
    assert len(out[0].pred_instances.scores) <= 5
