"""A tiny DINO built from an mmext config vs mmdet's ``DINO`` (mmdet 3.3.0) with the same weights.

ResNet-18 (quarter width) with 4 levels, 1 encoder + 2 decoder layers (mmdet's DINO decoder only
works at width 256), 10 queries, 64x64 inputs with one padded image.  The denoising queries are
drawn under the same torch seed on both sides (our generator draws mmdet's random numbers in
mmdet's order).  The loss dicts (every decoder layer's matching and denoising losses and the
encoder loss), gradients, and detections must agree; state dicts round-trip; the shipped
configs build.
"""
import copy

import pytest
import torch
from mmdet.models.detectors import DINO as MMDetDINO
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.dense_heads import DINOHead
from mmext.models.detectors import DINO
from mmext.models.layers import DinoTransformerDecoder
from mmext.models.task_modules import HungarianAssigner
from mmext.registry import MODELS

register_all_modules(init_default_scope=False)

C, LEVELS = 256, 4


def model_cfg(detector: str, head: str, prefix: str = '', assigner: str = 'HungarianAssigner'):
    """mmdet's DINO config schema, tiny; ``prefix`` scopes the toolbox parts for mmext."""
    msda = dict(embed_dims=C, num_levels=LEVELS, num_heads=8, num_points=2, dropout=0.0)
    ffn = dict(embed_dims=C, feedforward_channels=64, ffn_drop=0.0)
    return dict(
        type=detector,
        num_queries=10,
        with_box_refine=True,
        as_two_stage=True,
        num_feature_levels=LEVELS,
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
            out_indices=(1, 2, 3),
            frozen_stages=-1,
            norm_cfg=dict(type='BN'),
            norm_eval=False,
            style='pytorch',
            init_cfg=None),
        neck=dict(
            type=f'{prefix}ChannelMapper',
            in_channels=[32, 64, 128],
            kernel_size=1,
            out_channels=C,
            act_cfg=None,
            norm_cfg=dict(type='GN', num_groups=32),
            num_outs=LEVELS),
        encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=msda, ffn_cfg=ffn)),
        decoder=dict(
            num_layers=2,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=C, num_heads=8, dropout=0.0),
                cross_attn_cfg=msda,
                ffn_cfg=ffn),
            post_norm_cfg=None),
        positional_encoding=dict(num_feats=C // 2, normalize=True, offset=0.0, temperature=20),
        bbox_head=dict(
            type=head,
            num_classes=3,
            embed_dims=C,
            sync_cls_avg_factor=True,
            loss_cls=dict(
                type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        dn_cfg=dict(
            label_noise_scale=0.5,
            box_noise_scale=1.0,
            group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=6)),
        train_cfg=dict(
            assigner=dict(
                type=assigner,
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=7))


def make_models(seed=0):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        import mmdet.registry
        ref = mmdet.registry.MODELS.build(model_cfg('DINO', 'DINOHead'))
    ref.init_weights()
    ours = MODELS.build(model_cfg('DINO', 'DINOHead', prefix='mmdet.'))
    assert isinstance(ours, DINO) and not isinstance(ours, MMDetDINO)
    assert type(ours.bbox_head) is DINOHead and type(ours.decoder) is DinoTransformerDecoder
    assert type(ours.bbox_head.assigner) is HungarianAssigner
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():  # move the heads away from their initial (zero-delta) outputs
        for p in ref.bbox_head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # and the sampling points off the pixel grid: the initial offsets put them exactly on
        # pixel centres, where bilinear sampling has a kink and backends may take either side
        for name, p in ref.named_parameters():
            if 'sampling_offsets' in name:
                p.add_(torch.rand_like(p) * 0.2 + 0.1)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def make_batch(seed=0, num_gts=(3, 2)):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2, 3, 64, 64, generator=g)
    inputs[1, :, 48:, :] = 0  # the second image is 48x40, padded to 64x64
    inputs[1, :, :, 40:] = 0
    samples = []
    for (h, w), n in zip([(64, 64), (48, 40)], num_gts):
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


@pytest.mark.parametrize('num_gts', [(3, 2), (0, 4)])
def test_tiny_dino_losses_gradients_and_predictions_match_mmdet(num_gts):
    ref, ours = make_models()
    inputs, samples = make_batch(num_gts=num_gts)
    ref.train()
    ours.train()
    torch.manual_seed(7)  # the same denoising noise on both sides
    expected = ref.loss(inputs, samples)
    torch.manual_seed(7)
    got = ours.loss(inputs, samples)
    assert list(got) == list(expected)
    assert {'enc_loss_cls', 'dn_loss_bbox', 'd0.dn_loss_iou', 'd0.loss_cls'} <= set(got)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-5, msg=k)
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
        for o, e in zip(ours._forward(inputs, samples), ref._forward(inputs, samples)):
            torch.testing.assert_close(o, e, rtol=0, atol=1e-5)
    for e, o in zip(expected, got):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(
                o.pred_instances[key], e.pred_instances[key], rtol=0, atol=1e-5)


def test_batch_without_ground_truth_keeps_label_embedding_in_graph():
    _, ours = make_models(seed=1)
    inputs, samples = make_batch(num_gts=(0, 0))
    ours.train()
    losses = ours.loss(inputs, samples)
    dn_losses = [v.detach() for k, v in losses.items() if 'dn_loss' in k]
    assert len(dn_losses) == 6 and all(float(v.sum()) == 0 for v in dn_losses)
    sum(losses.values()).backward()
    assert ours.dn_query_generator.label_embedding.weight.grad is not None


def test_state_dicts_round_trip_and_options():
    ref, ours = make_models(seed=2)
    torch.manual_seed(5)
    random = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in ours.state_dict().items()
    }
    ours.load_state_dict(random, strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    for key in ('two_stage', 'refine'):
        cfg = model_cfg('DINO', 'DINOHead', prefix='mmdet.')
        cfg['as_two_stage' if key == 'two_stage' else 'with_box_refine'] = False
        with pytest.raises(ValueError, match='as_two_stage=True and with_box_refine=True'):
            MODELS.build(cfg)
    cfg = model_cfg('DINO', 'DINOHead', prefix='mmdet.')
    cfg['dn_cfg']['num_classes'] = 3
    with pytest.raises(ValueError, match='num_classes'):
        MODELS.build(cfg)


def test_init_weights():
    _, ours = make_models(seed=3)
    ours.init_weights()
    w = ours.query_embedding.weight
    assert w.abs().max() <= (6 / (w.size(0) + w.size(1)))**0.5
    attn = ours.encoder.layers[0].self_attn
    assert not attn.attention_weights.weight.any() and not attn.value_proj.bias.any()
