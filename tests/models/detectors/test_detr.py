"""A tiny DETR built from an mmext config vs mmdet's ``DETR`` (mmdet 3.3.0) with the same weights.

ResNet-18 (quarter width), 2 encoder + 2 decoder layers of 32 channels, 10 queries, 64x64 inputs
with one padded image: the loss dicts (all decoder layers), gradients and detections must agree.
Also: state dicts round-trip between the two (identical keys, so no converter is needed), and the
shipped configs build.
"""
import copy
import os

import pytest
import torch
from mmdet.models.detectors import DETR as MMDetDETR
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.detectors import DETR
from mmext.registry import MODELS

register_all_modules(init_default_scope=False)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
C = 32
ATTN = dict(embed_dims=C, num_heads=4, dropout=0.0, batch_first=True)
FFN_CFG = dict(
    embed_dims=C,
    feedforward_channels=64,
    num_fcs=2,
    ffn_drop=0.0,
    act_cfg=dict(type='ReLU', inplace=True))


def model_cfg(detector: str, head: str, prefix: str = '') -> dict:
    """mmdet's DETR config schema; ``prefix`` scopes the toolbox parts for the mmext build."""
    return dict(
        type=detector,
        num_queries=10,
        data_preprocessor=dict(
            type=f'{prefix}DetDataPreprocessor',
            mean=[0., 0., 0.],
            std=[1., 1., 1.],
            pad_size_divisor=1),
        backbone=dict(
            type=f'{prefix}ResNet',
            depth=18,
            base_channels=16,
            num_stages=4,
            out_indices=(3, ),
            frozen_stages=-1,
            norm_cfg=dict(type='BN'),
            norm_eval=False,
            style='pytorch',
            init_cfg=None),
        neck=dict(
            type=f'{prefix}ChannelMapper',
            in_channels=[128],
            kernel_size=1,
            out_channels=C,
            act_cfg=None,
            norm_cfg=None,
            num_outs=1),
        encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=ATTN, ffn_cfg=FFN_CFG)),
        decoder=dict(
            num_layers=2,
            layer_cfg=dict(self_attn_cfg=ATTN, cross_attn_cfg=ATTN, ffn_cfg=FFN_CFG),
            return_intermediate=True),
        positional_encoding=dict(num_feats=C // 2, normalize=True),
        bbox_head=dict(
            type=head,
            num_classes=3,
            embed_dims=C,
            loss_cls=dict(
                type='CrossEntropyLoss',
                bg_cls_weight=0.1,
                use_sigmoid=False,
                loss_weight=1.0,
                class_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='ClassificationCost', weight=1.),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=5))


def make_models(seed=0):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        import mmdet.registry
        ref = mmdet.registry.MODELS.build(model_cfg('DETR', 'DETRHead'))
    ref.init_weights()
    ours = MODELS.build(model_cfg('DETR', 'DETRHead', prefix='mmdet.'))
    assert isinstance(ours, DETR) and not isinstance(ours, MMDetDETR)
    assert type(ours.bbox_head).__module__.startswith('mmext.')
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():  # move the head away from its near-uniform initial outputs
        for p in ref.bbox_head.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2, 3, 64, 64, generator=g)
    inputs[1, :, 48:, :] = 0  # the second image is 48x40, padded to 64x64
    inputs[1, :, :, 40:] = 0
    samples = []
    for (h, w), n in zip([(64, 64), (48, 40)], [3, 2]):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(h, w),
                batch_input_shape=(64, 64),
                scale_factor=(1., 1.)))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.5
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 16], 1),
            labels=torch.randint(0, 3, (n, ), generator=g))
        samples.append(s)
    return inputs, samples


def test_tiny_detr_losses_gradients_and_predictions_match_mmdet():
    ref, ours = make_models()
    inputs, samples = make_batch()
    ref.train()
    ours.train()
    expected = ref.loss(inputs, samples)
    got = ours.loss(inputs, samples)
    assert list(got) == list(expected) and 'd0.loss_cls' in got
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5, msg=k)
    sum(expected.values()).backward()
    sum(got.values()).backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        q = ref_grads[name]
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)

    ref.eval()
    ours.eval()
    with torch.no_grad():
        expected = ref.predict(inputs, copy.deepcopy(samples))
        got = ours.predict(inputs, copy.deepcopy(samples))
        torch.testing.assert_close(ours._forward(inputs, samples), ref._forward(inputs, samples))
    for e, o in zip(expected, got):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(o.pred_instances[key], e.pred_instances[key])


def test_state_dicts_round_trip_without_conversion():
    ref, ours = make_models(seed=1)
    torch.manual_seed(5)
    random = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in ours.state_dict().items()
    }
    ours.load_state_dict(random, strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours2 = MODELS.build(model_cfg('DETR', 'DETRHead', prefix='mmdet.'))
    ours2.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ours2.state_dict().items():
        assert torch.equal(v, random[k]), k


def test_detr_rejects_mismatched_positional_encoding():
    cfg = model_cfg('DETR', 'DETRHead', prefix='mmdet.')
    cfg['positional_encoding'] = dict(num_feats=8, normalize=True)
    with pytest.raises(ValueError, match='num_feats'):
        MODELS.build(cfg)


def test_init_weights_xavier_transformer():
    _, ours = make_models()
    ours.init_weights()
    w = ours.encoder.layers[0].self_attn.attn.in_proj_weight
    bound = (6 / (w.size(0) + w.size(1)))**0.5
    assert w.abs().max() <= bound


@pytest.mark.parametrize('name', ['detr_r50_8xb2-150e_coco.py', 'detr_r18_shapes-128_demo.py'])
def test_shipped_configs_build(name):
    path = os.path.join(ROOT, 'configs', 'detr', name)
    if not os.path.exists(path):
        pytest.skip(f'{name} not shipped')
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmext'
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
    assert isinstance(model, DETR)
    assert type(model.bbox_head).__name__ == 'DETRHead'
    assert type(model.bbox_head).__module__.startswith('mmext.')
    with DefaultScope.overwrite_default_scope('mmdet'):  # the datasets' (inherited) scope
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            assert len(Compose(loader.dataset.pipeline).transforms) >= 4
    if name.startswith('detr_r50'):
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
        assert cfg.train_cfg.max_epochs == 150
        assert cfg.param_scheduler[0].milestones == [100]


def test_our_head_inside_mmdet_detr():
    """An mmdet DETR config with only ``bbox_head.type='mmext.DETRHead'`` changed."""
    ref, _ = make_models(seed=2)
    with DefaultScope.overwrite_default_scope('mmdet'):
        import mmdet.registry
        mixed = mmdet.registry.MODELS.build(model_cfg('DETR', 'mmext.DETRHead'))
    assert type(mixed.bbox_head).__module__.startswith('mmext.')
    mixed.load_state_dict(ref.state_dict(), strict=True)
    inputs, samples = make_batch(1)
    expected, got = ref.loss(inputs, samples), mixed.loss(inputs, samples)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5, msg=k)
    ref.eval()
    mixed.eval()
    with torch.no_grad():
        e = ref.predict(inputs, copy.deepcopy(samples))[1].pred_instances
        o = mixed.predict(inputs, copy.deepcopy(samples))[1].pred_instances
    torch.testing.assert_close(o.bboxes, e.bboxes)
