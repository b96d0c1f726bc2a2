"""Parity of ``mmext.FCOSHead`` with ``mmdet.models.dense_heads.FCOSHead`` (mmdet 3.3.0).

Both heads get identical weights (mmdet's state dict, randomly perturbed so that outputs are far
from the near-constant initial ones) and identical inputs; forward outputs, targets, losses,
parameter gradients and post-NMS detections are compared.  Sizes are small (32 channels,
a 128x128 image, strides 8..128) so that the whole file runs in seconds on a CPU.
"""
import copy
from collections import OrderedDict
from typing import Dict, List, Tuple

import mmdet.registry
import pytest
import torch
from mmdet.models.dense_heads import FCOSHead as MMDetFCOSHead
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.dense_heads import FCOSHead
from mmext.registry import MODELS

register_all_modules(init_default_scope=False)

INF = 1e8
IMG = 128
STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 4
# Ranges scaled to the 128x128 image so that every level gets positives.
RANGES = ((-1, 16), (16, 32), (32, 64), (64, 128), (128, INF))
BASE = dict(
    num_classes=NUM_CLASSES,
    in_channels=32,
    feat_channels=32,
    strides=STRIDES,
    regress_ranges=RANGES,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
    test_cfg=ConfigDict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
TRICKS = dict(
    BASE,
    center_sampling=True,
    center_sample_radius=1.5,
    norm_on_bbox=True,
    centerness_on_reg=True,
    conv_bias=True,
    loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
CONFIGS = dict(plain=BASE, tricks=TRICKS)
# other class losses: FocalLoss with other parameters (our fused CPU path) and a loss that goes
# through the configured module
LOSS_CONFIGS = dict(
    CONFIGS,
    focal_params=dict(
        BASE,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=1.5, alpha=0.4, loss_weight=2.0)),
    sigmoid_ce=dict(
        BASE, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)))


def mmdet_head(cfg: dict) -> MMDetFCOSHead:
    """mmdet's head builds its unscoped losses from the *current* default scope; pin it to mmdet so
    that a scope left behind by another test file cannot break the reference."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MMDetFCOSHead(**copy.deepcopy(cfg))


def make_heads(cfg: dict, seed: int = 0) -> Tuple[MMDetFCOSHead, FCOSHead]:
    torch.manual_seed(seed)
    ref = mmdet_head(cfg)
    ref.init_weights()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours = FCOSHead(**copy.deepcopy(cfg))
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_feats(batch: int, channels: int = 32, seed: int = 1) -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, IMG // s, IMG // s, generator=gen) for s in STRIDES]


def instances(boxes: List[List[float]], labels: List[int]) -> InstanceData:
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long))


def hard_batch() -> List[InstanceData]:
    """Several boxes per image, ties, tiny and degenerate boxes, boxes crossing regress ranges and
    the image border, and an image without boxes."""
    img0 = instances(
        [
            [10, 10, 60, 70],
            [10, 10, 60, 70],  # identical: the first one must win
            [30, 30, 50, 45],  # nested, smaller
            [2, 2, 5, 5],  # tiny, holds the point (4, 4)
            [100.5, 100.5, 101.5, 101.5],  # tiny, holds no point
            [0, 0, 127, 127],  # large: levels 2-3
            [-20, 40, 90, 200],  # crosses the border, levels 2-4
            [40, 40, 40, 80],
            [64, 90, 120, 90]
        ],  # zero width / zero height
        [0, 2, 1, 3, 2, 1, 3, 2, 0])
    gen = torch.Generator().manual_seed(3)
    xy = torch.rand(6, 2, generator=gen) * IMG
    wh = torch.rand(6, 2, generator=gen) * 90 + 4
    rand = torch.cat([xy - wh / 2, xy + wh / 2], 1).tolist()
    img1 = instances(rand + [[-50, -50, -10, -10], [120, 120, 300, 300]], [0, 1, 2, 3, 0, 1, 2, 3])
    img2 = instances([], [])
    return [img0, img1, img2]


def metas(batch: int, scale_factor: Tuple[float, float] = (1.0, 1.0)) -> List[dict]:
    return [
        dict(
            img_shape=(IMG, IMG),
            pad_shape=(IMG, IMG),
            ori_shape=(IMG, IMG),
            scale_factor=scale_factor) for _ in range(batch)
    ]


def loss_and_grads(head, feats, gts, img_metas) -> Tuple[Dict, Dict, List]:
    head.train()
    head.zero_grad()
    feats = [f.clone().requires_grad_() for f in feats]
    losses = head.loss_by_feat(*head(feats), gts, img_metas)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    return ({k: v.detach() for k, v in losses.items()}, grads, [f.grad for f in feats])


def assert_tensors_close(a, b, atol=1e-5, rtol=1e-5, what=''):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f'{what}: {m}')


# --------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'extra', [
        dict(), TRICKS,
        dict(cls_predictor_cfg=dict(type='NormedConv2d', tempearture=20)),
        dict(dcn_on_last_conv=True),
        dict(norm_cfg=None),
        dict(stacked_convs=2, feat_channels=64)
    ],
    ids=['plain', 'tricks', 'normed_cls', 'dcn', 'no_norm', 'two_convs'])
def test_state_dict_and_init_match_mmdet(extra):
    cfg = dict(BASE, **extra)
    torch.manual_seed(0)
    ref = mmdet_head(cfg)
    torch.manual_seed(0)  # DCN weights keep their construction-time values
    ours = FCOSHead(**copy.deepcopy(cfg))
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert {k: v.shape for k, v in our_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    # Same init: the same RNG stream gives the same weights.
    torch.manual_seed(123)
    ref.init_weights()
    torch.manual_seed(123)
    ours.init_weights()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    # conv_cls bias prior -log((1 - 0.01) / 0.01)
    torch.testing.assert_close(ours.conv_cls.bias, torch.full_like(ours.conv_cls.bias, -4.59512))


def test_legacy_checkpoint_names_load():
    ref, ours = make_heads(BASE)
    legacy = OrderedDict(
        (k.replace('conv_cls',
                   'fcos_cls').replace('conv_reg',
                                       'fcos_reg').replace('conv_centerness', 'fcos_centerness'), v)
        for k, v in ref.state_dict().items())  # no _metadata: version None
    fresh = FCOSHead(**copy.deepcopy(BASE))
    fresh.load_state_dict(legacy)
    for k, v in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match='regress_ranges'):
        FCOSHead(**dict(BASE, regress_ranges=RANGES[:3]))
    with pytest.raises(TypeError):
        FCOSHead(**dict(BASE, no_such_option=1))


# --------------------------------------------------------------------------------------------
# forward and targets
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.parametrize('training', [True, False])
def test_forward_identical(name, training):
    ref, ours = make_heads(CONFIGS[name])
    ref.train(training)
    ours.train(training)
    feats = make_feats(2)
    with torch.no_grad():
        for ref_lvls, our_lvls in zip(ref(feats), ours(feats)):
            for r, o in zip(ref_lvls, our_lvls):
                assert torch.equal(r, o)


def test_forward_takes_any_iterable_of_levels():
    """mmdet's heads take any iterable of level maps (zip over them); so does ours: a generator
    gives the same outputs as the list."""
    ref, ours = make_heads(BASE)
    feats = make_feats(2)
    with torch.no_grad():
        expected = ours(feats)
        for got_lvls, exp_lvls, ref_lvls in zip(
                ours(f for f in feats), expected, ref(f for f in feats)):
            for g, e, r in zip(got_lvls, exp_lvls, ref_lvls):
                assert torch.equal(g, e) and torch.equal(g, r)
    with pytest.raises(ValueError, match='4 feature maps for 5 strides'):
        ours(f for f in feats[:4])


def ref_targets_as_batch(ref, points, gts) -> Tuple[torch.Tensor, torch.Tensor]:
    """mmdet's per-level [B * P_l] targets rearranged to our [B, P] layout."""
    labels, bbox_targets = ref.get_targets(points, gts)
    batch = len(gts)
    return (torch.cat([lab.view(batch, -1) for lab in labels],
                      1), torch.cat([t.view(batch, -1, 4) for t in bbox_targets], 1))


def random_batch(gen: torch.Generator) -> List[InstanceData]:
    """Boxes on a 4-pixel lattice so that points fall exactly on edges and range limits, with
    duplicates (ties), degenerate and out-of-image boxes and empty images."""
    batch = []
    for _ in range(4):
        n = int(torch.randint(0, 12, (1, ), generator=gen))
        xy1 = torch.randint(-8, 30, (n, 2), generator=gen) * 4.
        wh = torch.randint(0, 40, (n, 2), generator=gen) * 4.
        boxes = torch.cat([xy1, xy1 + wh], 1)
        if n > 2:
            boxes[-1] = boxes[0]
        labels = torch.randint(0, NUM_CLASSES, (n, ), generator=gen)
        batch.append(InstanceData(bboxes=boxes, labels=labels))
    return batch


@pytest.mark.parametrize('name', CONFIGS)
def test_targets_identical(name):
    ref, ours = make_heads(CONFIGS[name])
    points = ref.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES], device='cpu')
    # the hard batch reaches every level (regress ranges are crossed)
    labels, _ = ours.get_targets(points, hard_batch())
    per_level = labels[0].split([len(p) for p in points])
    assert all((lvl < NUM_CLASSES).any() for lvl in per_level)
    gen = torch.Generator().manual_seed(0)
    for gts in [hard_batch()] + [random_batch(gen) for _ in range(20)]:
        ref_labels, ref_targets = ref_targets_as_batch(ref, points, gts)
        labels, targets = ours.get_targets(points, gts)
        assert torch.equal(labels, ref_labels)
        assert torch.equal(targets, ref_targets)


@pytest.mark.parametrize('name', CONFIGS)
def test_targets_identical_with_non_finite_boxes(name):
    """NaN / inf coordinates never make a positive, exactly as in mmdet."""
    ref, ours = make_heads(CONFIGS[name])
    points = ref.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES], device='cpu')
    nan, inf = float('nan'), float('inf')
    gts = [
        instances([[10, 10, 60, 70], [nan, 0, 50, 50], [0, 0, nan, 50], [-inf, 0, inf, 50],
                   [0, 0, inf, 30], [20, -inf, 40, 90]], [0, 1, 2, 3, 0, 1]),
        instances([[nan, nan, nan, nan], [30, 30, 50, 45]], [2, 3])
    ]
    ref_labels, ref_targets = ref_targets_as_batch(ref, points, gts)
    labels, targets = ours.get_targets(points, gts)
    assert torch.equal(labels, ref_labels)
    torch.testing.assert_close(targets, ref_targets, rtol=0, atol=0, equal_nan=True)


def test_ties_go_to_the_first_box():
    _, ours = make_heads(BASE)
    points = ours.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES], device='cpu')
    for order in ([0, 2], [2, 0]):
        gts = [instances([[10, 10, 40, 40], [10, 10, 40, 40]], order)]
        labels, _ = ours.get_targets(points, gts)
        pos = labels[labels < NUM_CLASSES]
        assert pos.numel() > 0 and (pos == order[0]).all()


@pytest.mark.parametrize('name', CONFIGS)
def test_degenerate_boxes_give_no_positives(name):
    """Zero-width/height (and inverted) boxes: no point is strictly inside, so no positive."""
    ref, ours = make_heads(CONFIGS[name])
    gts = [
        instances([[40, 40, 40, 80], [16, 20, 100, 20], [60, 60, 60, 60], [50, 50, 30, 30]],
                  [0, 1, 2, 3])
    ]
    points = ours.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES], device='cpu')
    labels, _ = ours.get_targets(points, gts)
    assert (labels == NUM_CLASSES).all()
    ref_losses, ref_grads, _ = loss_and_grads(ref, make_feats(1), gts, metas(1))
    losses, grads, _ = loss_and_grads(ours, make_feats(1), gts, metas(1))
    for k in ref_losses:
        assert torch.isfinite(losses[k])
        assert float(losses[k]) == pytest.approx(float(ref_losses[k]), abs=1e-5)
    assert float(losses['loss_bbox']) == 0 and float(losses['loss_centerness']) == 0


# --------------------------------------------------------------------------------------------
# losses and gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', LOSS_CONFIGS)
@pytest.mark.parametrize('batch', ['hard', 'no_boxes'])
def test_loss_and_grad_parity(name, batch):
    ref, ours = make_heads(LOSS_CONFIGS[name])
    gts = hard_batch() if batch == 'hard' else [instances([], []) for _ in range(2)]
    feats = make_feats(len(gts))
    ref_losses, ref_grads, ref_in_grads = loss_and_grads(ref, feats, gts, metas(len(gts)))
    losses, grads, in_grads = loss_and_grads(ours, feats, gts, metas(len(gts)))
    assert set(losses) == set(ref_losses)
    for k in ref_losses:
        assert_tensors_close(losses[k], ref_losses[k], what=k)
    if batch == 'hard':
        assert float(ref_losses['loss_bbox']) > 0  # the batch has positives
    assert set(grads) == set(ref_grads)
    for k in ref_grads:
        assert_tensors_close(grads[k], ref_grads[k], what=f'grad {k}')
    for lvl, (g, rg) in enumerate(zip(in_grads, ref_in_grads)):
        assert_tensors_close(g, rg, what=f'input grad level {lvl}')


def test_loss_through_data_samples():
    """``BaseDenseHead.loss`` (the detector's entry point) feeds our loss_by_feat."""
    ref, ours = make_heads(TRICKS)
    samples = []
    for gt, meta in zip(hard_batch(), metas(3)):
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = gt
        samples.append(sample)
    feats = make_feats(3)
    ref_losses = ref.loss(feats, samples)
    losses = ours.loss(feats, samples)
    for k in ref_losses:
        assert_tensors_close(losses[k], ref_losses[k], what=k)


@pytest.mark.parametrize('tensor_name,level', [('cls_scores', 0), ('bbox_preds', 2),
                                               ('centernesses', 4)])
def test_nan_prediction_raises(tensor_name, level):
    _, ours = make_heads(BASE)
    outs = dict(zip(('cls_scores', 'bbox_preds', 'centernesses'), ours(make_feats(3))))
    bad = outs[tensor_name][level].detach().clone()
    bad.view(-1)[-1] = float('nan')
    outs[tensor_name][level] = bad
    with pytest.raises(ValueError, match=rf'{tensor_name}\[{level}\] \(level {level}'):
        ours.loss_by_feat(**outs, batch_gt_instances=hard_batch(), batch_img_metas=metas(3))


def test_nan_feature_raises():
    _, ours = make_heads(BASE)
    feats = make_feats(3)
    feats[1][0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match=r'cls_scores\[1\].*NaN'):
        ours.loss_by_feat(*ours(feats), hard_batch(), metas(3))


def test_inf_without_nan_does_not_raise():
    """The NaN check sums the predictions; +inf and -inf cancelling to NaN is not an error."""
    _, ours = make_heads(BASE)
    cls_scores, bbox_preds, centernesses = [[t.detach().clone() for t in lvls]
                                            for lvls in ours(make_feats(3))]
    cls_scores[0].view(-1)[0] = float('inf')
    cls_scores[1].view(-1)[0] = float('-inf')
    ours.loss_by_feat(cls_scores, bbox_preds, centernesses, hard_batch(), metas(3))


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
def predict(head, feats, scale_factor=(0.5, 0.8)) -> List[InstanceData]:
    head.eval()
    samples = [DetDataSample(metainfo=m) for m in metas(len(feats[0]), scale_factor)]
    with torch.no_grad():
        return head.predict(feats, samples, rescale=True)


@pytest.mark.parametrize('name', CONFIGS)
def test_detections_identical(name):
    ref, ours = make_heads(CONFIGS[name])
    feats = make_feats(2)
    for r, o in zip(predict(ref, feats), predict(ours, feats)):
        assert len(o) > 0
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(getattr(o, key), getattr(r, key)), key


def test_score_sqrt_is_geometric_mean():
    _, ours = make_heads(BASE)
    sqrt_head = FCOSHead(**dict(BASE, score_sqrt=True))
    sqrt_head.load_state_dict(ours.state_dict())
    feats = make_feats(2)
    for plain, geo in zip(predict(ours, feats), predict(sqrt_head, feats)):
        # sqrt is monotonic: same boxes survive NMS, scores are the square roots
        assert torch.equal(plain.bboxes, geo.bboxes)
        assert torch.equal(plain.labels, geo.labels)
        torch.testing.assert_close(geo.scores, plain.scores.sqrt())


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
MMDET_STYLE_CFG = dict(  # as written in an mmdet config: unscoped loss / coder types
    num_classes=3,
    in_channels=32,
    feat_channels=32,
    stacked_convs=1,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
    loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
    bbox_coder=dict(type='DistancePointBBoxCoder'))


def test_build_in_mmext_default_scope():
    with DefaultScope.overwrite_default_scope('mmext'):
        head = MODELS.build(dict(MMDET_STYLE_CFG, type='FCOSHead'))
    assert type(head) is FCOSHead
    assert type(head.loss_cls).__name__ == 'FocalLoss'
    assert type(head.loss_cls).__module__.startswith('mmdet.')
    assert type(head.loss_bbox).__name__ == 'GIoULoss'
    assert type(head.bbox_coder).__name__ == 'DistancePointBBoxCoder'


def test_build_from_mmdet_scope_config():
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = mmdet.registry.MODELS.build(dict(MMDET_STYLE_CFG, type='mmext.FCOSHead'))
        ref = mmdet.registry.MODELS.build(dict(MMDET_STYLE_CFG, type='FCOSHead'))
    assert type(head) is FCOSHead and type(ref) is MMDetFCOSHead


def test_swap_in_mmdet_detector_config():
    """An mmdet FCOS detector config with only the head type changed builds, trains and predicts
    like the original."""

    def detector_cfg(head_type: str) -> ConfigDict:  # as Config.fromfile would give it
        return ConfigDict(
            type='FCOS',
            data_preprocessor=dict(
                type='DetDataPreprocessor',
                mean=[0., 0., 0.],
                std=[255., 255., 255.],
                bgr_to_rgb=True,
                pad_size_divisor=32),
            backbone=dict(
                type='ResNet',
                depth=18,
                num_stages=4,
                out_indices=(1, 2, 3),
                norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=True,
                style='pytorch'),
            neck=dict(
                type='FPN',
                in_channels=[128, 256, 512],
                out_channels=32,
                start_level=0,
                add_extra_convs='on_output',
                num_outs=5,
                relu_before_extra_convs=True),
            bbox_head=dict(
                MMDET_STYLE_CFG,
                type=head_type,
                strides=STRIDES,
                center_sampling=True,
                norm_on_bbox=True,
                centerness_on_reg=True),
            train_cfg=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.4,
                    min_pos_iou=0,
                    ignore_iof_thr=-1),
                allowed_border=-1,
                pos_weight=-1,
                debug=False),
            test_cfg=dict(
                nms_pre=1000,
                min_bbox_size=0,
                score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=100))

    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        ref = mmdet.registry.MODELS.build(detector_cfg('FCOSHead'))
        ours = mmdet.registry.MODELS.build(detector_cfg('mmext.FCOSHead'))
    assert type(ours.bbox_head) is FCOSHead
    ours.load_state_dict(ref.state_dict())

    inputs = torch.randint(0, 255, (2, 3, IMG, IMG), dtype=torch.uint8)
    samples = []
    for gt, meta in zip(hard_batch()[:2], metas(2)):
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = gt
        samples.append(sample)
    data = dict(inputs=list(inputs), data_samples=samples)
    ref_losses = ref(**ref.data_preprocessor(copy.deepcopy(data), True), mode='loss')
    losses = ours(**ours.data_preprocessor(copy.deepcopy(data), True), mode='loss')
    for k in ref_losses:
        assert_tensors_close(losses[k], ref_losses[k], what=k)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        ref_pred = ref.test_step(copy.deepcopy(data))
        pred = ours.test_step(copy.deepcopy(data))
    for r, o in zip(ref_pred, pred):
        assert torch.equal(o.pred_instances.bboxes, r.pred_instances.bboxes)
        assert torch.equal(o.pred_instances.scores, r.pred_instances.scores)


# --------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# --------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize('name', CONFIGS)
def test_cuda_targets_and_loss_parity(name):
    """Targets on the GPU equal mmdet's; losses and gradients agree.  The class loss is the
    sigmoid CE so that the check does not depend on mmcv having been built with CUDA ops."""
    ref, ours = make_heads(
        dict(LOSS_CONFIGS['sigmoid_ce'], **{
            k: v
            for k, v in CONFIGS[name].items() if k != 'loss_cls'
        }))
    ref, ours = ref.cuda(), ours.cuda()
    gts = [gt.to('cuda') for gt in hard_batch()]
    points = ref.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES], device='cuda')
    ref_labels, ref_targets = ref_targets_as_batch(ref, points, gts)
    labels, targets = ours.get_targets(points, gts)
    assert torch.equal(labels, ref_labels)
    assert torch.equal(targets, ref_targets)
    feats = [f.cuda() for f in make_feats(len(gts))]
    ref_losses, ref_grads, _ = loss_and_grads(ref, feats, gts, metas(len(gts)))
    losses, grads, _ = loss_and_grads(ours, feats, gts, metas(len(gts)))
    for k in ref_losses:
        assert_tensors_close(losses[k], ref_losses[k], what=k)
    for k in ref_grads:
        assert_tensors_close(grads[k], ref_grads[k], atol=1e-4, what=f'grad {k}')


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nonfinite_gt_box_raises_naming_the_image(value):
    """get_targets gives such a box no positive (as mmdet: see the parity test above); the loss
    refuses it, naming the image."""
    _, ours = make_heads(BASE)
    gts = hard_batch()
    gts[1].bboxes[1, 2] = value
    img_metas = [dict(m, img_path=f'data/{i}.png', img_id=i + 10) for i, m in enumerate(metas(3))]
    with pytest.raises(
            ValueError,
            match=r"FCOSHead: ground-truth boxes with NaN or infinite "
            r"coordinates in image 1 of the batch \(img_path='data/1\.png', img_id=11\)"
            r': 1 of \d+ box'):
        ours.loss_by_feat(*ours(make_feats(3)), gts, img_metas)
