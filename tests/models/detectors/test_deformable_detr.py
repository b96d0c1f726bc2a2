"""A tiny Deformable DETR built from an mmext config vs mmdet's ``DeformableDETR`` (mmdet 3.3.0)
with the same weights.

ResNet-18 (quarter width) C3-C5 plus one extra stride-2 level through ``ChannelMapper`` (4
levels), 2 encoder + 2 decoder layers of 32 channels, 10 queries, two 64x64 inputs of which one
is padded: for the plain, box-refine and two-stage variants, the loss dicts (every decoder layer
and the encoder proposals), gradients and detections must agree.  Also: state dicts round-trip
between the two (identical keys), the shipped configs build and the demo config trains.
"""
import copy
import functools
import glob
import os

import pytest
import torch
from mmdet.models.detectors import DeformableDETR as MMDetDeformableDETR
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmext.models.detectors import DeformableDETR
from mmext.registry import MODELS

register_all_modules(init_default_scope=False)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
C = 32
MSDA = dict(embed_dims=C, num_heads=4, num_levels=4, num_points=2, batch_first=True)
FFN_CFG = dict(embed_dims=C, feedforward_channels=64, ffn_drop=0.1)
VARIANTS = {
    'plain': dict(),
    'refine': dict(with_box_refine=True),
    'two-stage': dict(with_box_refine=True, as_two_stage=True),
}


def model_cfg(variant: str, prefix: str = '') -> dict:
    """mmdet's Deformable DETR config schema; ``prefix`` scopes the toolbox parts for mmext."""
    return dict(
        type='DeformableDETR',
        num_queries=10,
        num_feature_levels=4,
        **VARIANTS[variant],
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
            norm_cfg=dict(type='GN', num_groups=8),
            num_outs=4),
        encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=MSDA, ffn_cfg=FFN_CFG)),
        decoder=dict(
            num_layers=2,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=C, num_heads=4, dropout=0.1, batch_first=True),
                cross_attn_cfg=MSDA,
                ffn_cfg=FFN_CFG),
            post_norm_cfg=None),
        positional_encoding=dict(num_feats=C // 2, normalize=True, offset=-0.5),
        bbox_head=dict(
            type='DeformableDETRHead',
            num_classes=3,
            embed_dims=C,
            sync_cls_avg_factor=True,
            loss_cls=dict(
                type=f'{prefix}FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                loss_weight=2.0),
            loss_bbox=dict(type=f'{prefix}L1Loss', loss_weight=5.0),
            loss_iou=dict(type=f'{prefix}GIoULoss', loss_weight=2.0)),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=5))


def build_ref(variant):
    with DefaultScope.overwrite_default_scope('mmdet'):
        import mmdet.registry
        ref = mmdet.registry.MODELS.build(model_cfg(variant))
    # mmdet hard-codes 128 frequencies per coordinate (embed_dims 256); ours uses embed_dims / 2
    ref.get_proposal_pos_embed = functools.partial(
        MMDetDeformableDETR.get_proposal_pos_embed, num_pos_feats=C // 2)
    return ref


def make_models(variant, seed=0):
    torch.manual_seed(seed)
    ref = build_ref(variant)
    ref.init_weights()
    ours = MODELS.build(model_cfg(variant, prefix='mmdet.'))
    assert isinstance(ours, DeformableDETR) and not isinstance(ours, MMDetDeformableDETR)
    assert type(ours.bbox_head).__module__.startswith('mmext.')
    assert type(ours.bbox_head.assigner).__module__.startswith('mmext.')
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():  # move the head off its initial near-constant outputs
        for p in ref.bbox_head.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        # and the sampling points off the pixel grid: the initial offsets put them exactly on
        # pixel centres, where bilinear sampling has a kink and backends may take either side
        for name, p in ref.named_parameters():
            if 'sampling_offsets' in name:
                p.add_(torch.rand_like(p) * 0.2 + 0.1)
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


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_tiny_deformable_detr_matches_mmdet(variant):
    ref, ours = make_models(variant)
    inputs, samples = make_batch()
    for m in (ref, ours):  # dropout off, BN in training mode
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.
            elif isinstance(mod, torch.nn.MultiheadAttention):
                mod.dropout = 0.  # on the attention weights
    expected = ref.loss(inputs, samples)
    got = ours.loss(inputs, samples)
    assert list(got) == list(expected) and 'd0.loss_cls' in got
    assert ('enc_loss_cls' in got) == (variant == 'two-stage')
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
        head_ref = ref.forward_transformer(ref.extract_feat(inputs), samples)
        head_ours = ours.forward_transformer(ours.extract_feat(inputs), samples)
    torch.testing.assert_close(
        head_ours['hidden_states'], head_ref['hidden_states'], rtol=0, atol=1e-5)
    for o, e in zip(head_ours['references'], head_ref['references']):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-5)
    # normalised boxes and logits of every layer at 1e-5; pixel boxes (up to 64 px, where a
    # float32 ulp is 8e-6) at float32's default tolerance
    with torch.no_grad():
        for o, e in zip(ours._forward(inputs, samples), ref._forward(inputs, samples)):
            torch.testing.assert_close(o, e, rtol=0, atol=1e-5)
    for e, o in zip(expected, got):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(o.pred_instances[key], e.pred_instances[key], msg=key)


def test_unpadded_batch_and_encoder_outputs_match_mmdet():
    ref, ours = make_models('two-stage', seed=3)
    inputs, samples = make_batch(2)
    for s in samples:
        s.set_metainfo(dict(img_shape=(64, 64)))
    ref.eval()
    ours.eval()
    with torch.no_grad():
        feats = ours.extract_feat(inputs)
        enc_in, dec_in = ours.pre_transformer(feats, samples)
        enc_in_ref, _ = ref.pre_transformer(feats, samples)
        assert enc_in['feat_mask'] is None and enc_in_ref['feat_mask'] is None
        torch.testing.assert_close(enc_in['valid_ratios'], enc_in_ref['valid_ratios'])
        memory = ours.forward_encoder(**enc_in)['memory']
        torch.testing.assert_close(
            memory, ref.forward_encoder(**enc_in_ref)['memory'], rtol=0, atol=1e-5)
        got = ours.gen_encoder_output_proposals(memory, None, enc_in['spatial_shapes'])
        expected = ref.gen_encoder_output_proposals(memory, None, enc_in['spatial_shapes'])
    for o, e in zip(got, expected):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-5)
    # the proposals of level l have side 0.05 * 2^l, stored as logits
    sizes = got[1][0, enc_in['level_start_index'], 2].sigmoid()
    torch.testing.assert_close(sizes, 0.05 * 2.0**torch.arange(4.))


def test_proposal_pos_embed_equals_mmdet_at_width_256():
    x = torch.randn(2, 7, 4)
    torch.testing.assert_close(
        DeformableDETR.get_proposal_pos_embed(x), MMDetDeformableDETR.get_proposal_pos_embed(x))


def test_state_dicts_round_trip_without_conversion():
    ref, ours = make_models('two-stage', seed=1)
    torch.manual_seed(5)
    random = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in ours.state_dict().items()
    }
    ours.load_state_dict(random, strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours2 = MODELS.build(model_cfg('two-stage', prefix='mmdet.'))
    ours2.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ours2.state_dict().items():
        assert torch.equal(v, random[k]), k


def test_init_weights():
    torch.manual_seed(0)
    for variant in VARIANTS:
        model = MODELS.build(model_cfg(variant, prefix='mmdet.'))
        model.init_weights()
        attn = model.encoder.layers[0].self_attn
        assert not attn.attention_weights.weight.any()
        bias = model.bbox_head.reg_branches[0][-1].bias
        assert bias[2:].tolist() == ([0., 0.] if variant == 'two-stage' else [-2., -2.])


def test_bad_configs():
    cfg = model_cfg('plain', prefix='mmdet.')
    cfg['bbox_head']['as_two_stage'] = True
    with pytest.raises(ValueError, match='must not set'):
        MODELS.build(cfg)
    cfg = model_cfg('plain', prefix='mmdet.')
    cfg['num_feature_levels'] = 3
    cfg['encoder']['layer_cfg']['self_attn_cfg'] = dict(MSDA, num_levels=3)
    model = MODELS.build(cfg)
    inputs, samples = make_batch()
    with pytest.raises(ValueError, match='num_feature_levels=3'):
        model.loss(inputs, samples)


CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'deformable_detr', '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_shipped_configs_build(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmext'
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
    assert isinstance(model, DeformableDETR)
    assert type(model.bbox_head).__module__.startswith('mmext.')
    assert type(model.encoder).__module__.startswith('mmext.')
    assert type(model.bbox_head.assigner).__module__.startswith('mmext.')
    name = os.path.basename(path)
    assert model.with_box_refine == ('refine' in name)
    assert model.as_two_stage == ('twostage' in name)
    with DefaultScope.overwrite_default_scope('mmdet'):  # the datasets' (inherited) scope
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            assert len(Compose(loader.dataset.pipeline).transforms) >= 4
    if '_coco' in name:
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
        assert cfg.train_cfg.max_epochs == 50
        assert model.num_queries == 300


def test_demo_config_train_step():
    """The shapes demo model takes one optimiser step (its optimiser, clipping, lr multipliers)
    on two synthetic 128x128 images, one without objects."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(
        os.path.join(ROOT, 'configs', 'deformable_detr',
                     'deformable-detr-refine-twostage_r18_shapes-128_demo.py'))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    model.init_weights()
    model.train()
    offsets = [g for g in optim.optimizer.param_groups if g['lr'] == pytest.approx(2e-5)]
    # sampling_offsets (weight, bias) of the 6 deformable attentions at 0.1x; the two-stage model
    # has no reference_points_fc
    assert len(offsets) == 2 * 6
    samples = []
    for boxes, labels in [([[10., 12., 60., 70.], [64., 30., 120., 90.]], [1, 3]), ([], [])]:
        s = DetDataSample(
            metainfo=dict(
                img_shape=(128, 128),
                ori_shape=(128, 128),
                scale_factor=(1., 1.),
                batch_input_shape=(128, 128)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes).reshape(-1, 4),
            labels=torch.tensor(labels, dtype=torch.long))
        samples.append(s)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, 128, 128), generator=g, dtype=torch.uint8)] * 2
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(dict(inputs=inputs, data_samples=samples), optim)
    assert {'loss_cls', 'd1.loss_iou', 'enc_loss_cls'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    moved = [not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before)]
    assert sum(moved) > len(moved) // 2
