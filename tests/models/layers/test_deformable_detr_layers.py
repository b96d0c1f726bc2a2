"""Parity of mmext's Deformable DETR encoder/decoder with mmdet 3.3.0's.

State dicts are exchanged both ways (identical keys); outputs, references and gradients must
agree in eval mode on a 3-level pyramid with a padded image, for 2-d reference points, 4-d
reference boxes and iterative refinement through regression branches.

The comparisons run in float64: in float32 the decoder self-attention's kernels differ (ours
calls ``nn.MultiheadAttention`` with ``need_weights=False``, i.e. fused scaled-dot-product
attention; mmcv's computes the weights explicitly) by ~1e-6, which three random-weight layers
amplify to ~1e-5.  In float64 any difference left is a difference in semantics.
"""
import copy

import pytest
import torch
import torch.nn as nn
from mmdet.models.layers.transformer import DeformableDetrTransformerDecoder as MMDetDecoder
from mmdet.models.layers.transformer import DeformableDetrTransformerEncoder as MMDetEncoder

from mmext.models.layers import (DeformableDetrTransformerDecoder, DeformableDetrTransformerEncoder,
                                 inverse_sigmoid)
from mmext.registry import MODELS

C, LEVELS = 32, 3
MSDA = dict(embed_dims=C, num_heads=4, num_levels=LEVELS, num_points=2, batch_first=True)
FFN_CFG = dict(embed_dims=C, feedforward_channels=64, ffn_drop=0.1)
ENC = dict(num_layers=2, layer_cfg=dict(self_attn_cfg=MSDA, ffn_cfg=FFN_CFG))
DEC = dict(
    num_layers=3,
    return_intermediate=True,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=C, num_heads=4, dropout=0.1, batch_first=True),
        cross_attn_cfg=MSDA,
        ffn_cfg=FFN_CFG),
    post_norm_cfg=None)
SHAPES = torch.tensor([[8, 8], [4, 4], [2, 2]])
START = torch.cat((SHAPES.new_zeros(1), SHAPES.prod(1).cumsum(0)[:-1]))
N = int(SHAPES.prod(1).sum())


def pyramid_mask_and_ratios():
    """Image 1 is padded: valid 6x5 of 8x8, 3x3 of 4x4, 2x2 of 2x2."""
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in SHAPES.tolist()]
    for m, (vh, vw) in zip(masks, [(6, 5), (3, 3), (2, 2)]):
        m[1, vh:] = True
        m[1, :, vw:] = True
    ratios = torch.stack([
        torch.stack([(~m[:, 0]).sum(1) / m.size(2), (~m[:, :, 0]).sum(1) / m.size(1)], -1)
        for m in masks
    ], 1).float()
    return torch.cat([m.flatten(1) for m in masks], 1), ratios


def swap_weights(ours, ref, seed):
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.double()
    ref.double()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.eval()
    ref.eval()


def test_inverse_sigmoid_clamps():
    x = torch.tensor([-0.5, 0., 0.25, 0.5, 1., 2.])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[2:4], torch.tensor([-1.0986123, 0.]))
    torch.testing.assert_close(y[3:].sigmoid()[:1], torch.tensor([0.5]))


@pytest.mark.parametrize('padded', [True, False])
def test_encoder_matches_mmdet(padded):
    torch.manual_seed(0)
    ours, ref = DeformableDetrTransformerEncoder(**ENC), MMDetEncoder(**ENC)
    swap_weights(ours, ref, 1)
    mask, ratios = pyramid_mask_and_ratios()
    if not padded:
        mask, ratios = None, torch.ones_like(ratios)
    args = dict(
        query=torch.randn(2, N, C, dtype=torch.float64),
        query_pos=torch.randn(2, N, C, dtype=torch.float64),
        key_padding_mask=mask,
        spatial_shapes=SHAPES,
        level_start_index=START,
        valid_ratios=ratios.double())
    torch.testing.assert_close(
        ours.get_encoder_reference_points(SHAPES, ratios, 'cpu'),
        MMDetEncoder.get_encoder_reference_points(SHAPES, ratios, 'cpu'),
        rtol=0,
        atol=0)
    q_ours = args['query'].clone().requires_grad_()
    q_ref = args['query'].clone().requires_grad_()
    got, expected = ours(**dict(args, query=q_ours)), ref(**dict(args, query=q_ref))
    assert got.shape == (2, N, C)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
    got.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(q_ours.grad, q_ref.grad, rtol=0, atol=1e-9)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-9, msg=name)


def reg_branches(num):
    return nn.ModuleList(
        [nn.Sequential(nn.Linear(C, C), nn.ReLU(), nn.Linear(C, 4)) for _ in range(num)]).double()


@pytest.mark.parametrize('ref_dims,refine,intermediate', [(2, False, True), (2, True, True),
                                                          (4, True, True), (4, False, False)])
def test_decoder_matches_mmdet(ref_dims, refine, intermediate):
    torch.manual_seed(2)
    cfg = dict(DEC, return_intermediate=intermediate)
    ours, ref = DeformableDetrTransformerDecoder(**cfg), MMDetDecoder(**cfg)
    swap_weights(ours, ref, 3)
    branches = reg_branches(3) if refine else None
    mask, ratios = pyramid_mask_and_ratios()
    g = torch.Generator().manual_seed(4)
    f64 = dict(generator=g, dtype=torch.float64)
    refs = torch.rand(2, 6, ref_dims, **f64) * 0.8 + 0.1
    args = dict(
        query=torch.randn(2, 6, C, **f64),
        query_pos=torch.randn(2, 6, C, **f64),
        value=torch.randn(2, N, C, **f64),
        key_padding_mask=mask,
        spatial_shapes=SHAPES,
        level_start_index=START,
        valid_ratios=ratios.double(),
        reg_branches=branches)
    r_ours, r_ref = refs.clone().requires_grad_(), refs.clone().requires_grad_()
    got = ours(**args, reference_points=r_ours)
    expected = ref(**args, reference_points=r_ref)
    lead = (3, ) if intermediate else ()
    out_dims = 4 if refine else ref_dims
    assert got[0].shape == lead + (2, 6, C) and got[1].shape == lead + (2, 6, out_dims)
    for o, e in zip(got, expected):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-9)
    got[0].square().sum().backward()
    expected[0].square().sum().backward()
    torch.testing.assert_close(r_ours.grad, r_ref.grad, rtol=0, atol=1e-9)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-9, msg=name)


def test_decoder_rejects_post_norm_and_sequence_first():
    with pytest.raises(ValueError, match='post norm'):
        DeformableDetrTransformerDecoder(**dict(DEC, post_norm_cfg=dict(type='LN')))
    bad = copy.deepcopy(ENC)
    bad['layer_cfg']['self_attn_cfg']['batch_first'] = False
    with pytest.raises(ValueError, match='batch_first'):
        DeformableDetrTransformerEncoder(**bad)


def test_encoder_checkpointing_keeps_outputs_and_registry_builds():
    torch.manual_seed(5)
    plain = DeformableDetrTransformerEncoder(**ENC)
    ckpt = MODELS.build(dict(type='DeformableDetrTransformerEncoder', num_cp=2, **ENC))
    ckpt.load_state_dict(plain.state_dict())
    for m in (plain, ckpt):
        m.train()
        for mod in m.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.
    mask, ratios = pyramid_mask_and_ratios()
    x = torch.randn(2, N, C)
    outs = [m(x, torch.zeros_like(x), mask, SHAPES, START, ratios) for m in (plain, ckpt)]
    torch.testing.assert_close(outs[0], outs[1])
    outs[0].sum().backward()
    outs[1].sum().backward()
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
