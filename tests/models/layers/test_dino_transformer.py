"""Parity of mmext's ``DinoTransformerDecoder`` with mmdet 3.3.0's.

mmdet's decoder encodes boxes with 128 sine features per coordinate whatever the width, so the
comparison runs at its width, 256 (ours uses ``embed_dims // 2``).  State dicts are exchanged both
ways; outputs, references (with their look-forward-twice graph) and gradients must agree, in
float64 (see test_deformable_detr_layers.py), with a padded image and a denoising attention mask.
"""
import pytest
import torch
import torch.nn as nn
from mmdet.models.layers.transformer import DinoTransformerDecoder as MMDetDecoder

from mmext.models.layers import CdnQueryGenerator, DinoTransformerDecoder
from mmext.registry import MODELS

C, LEVELS, Q_DN, Q = 256, 3, 4, 6
MSDA = dict(embed_dims=C, num_heads=8, num_levels=LEVELS, num_points=2, batch_first=True)
FFN_CFG = dict(embed_dims=C, feedforward_channels=64, ffn_drop=0.0)
DEC = dict(
    num_layers=3,
    return_intermediate=True,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=C, num_heads=8, dropout=0.0, batch_first=True),
        cross_attn_cfg=MSDA,
        ffn_cfg=FFN_CFG),
    post_norm_cfg=None)
SHAPES = torch.tensor([[8, 8], [4, 4], [2, 2]])
START = torch.cat((SHAPES.new_zeros(1), SHAPES.prod(1).cumsum(0)[:-1]))
N = int(SHAPES.prod(1).sum())


def padded_mask_and_ratios():
    """Image 1 is padded: valid 6x5 of 8x8, 3x3 of 4x4, 2x2 of 2x2."""
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in SHAPES.tolist()]
    for m, (vh, vw) in zip(masks, [(6, 5), (3, 3), (2, 2)]):
        m[1, vh:] = True
        m[1, :, vw:] = True
    ratios = torch.stack([
        torch.stack([(~m[:, 0]).sum(1) / m.size(2), (~m[:, :, 0]).sum(1) / m.size(1)], -1)
        for m in masks
    ], 1).double()
    return torch.cat([m.flatten(1) for m in masks], 1), ratios


def make_pair(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(DEC, **overrides)
    ours, ref = DinoTransformerDecoder(**cfg), MMDetDecoder(**cfg)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert 'ref_point_head.layers.1.weight' in ours.state_dict(
    ) and 'norm.weight' in ours.state_dict()
    ours.double()
    ref.double()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours.eval(), ref.eval()


def reg_branches(num):
    return nn.ModuleList(
        [nn.Sequential(nn.Linear(C, C), nn.ReLU(), nn.Linear(C, 4)) for _ in range(num)]).double()


@pytest.mark.parametrize('with_dn_mask', [True, False])
def test_decoder_matches_mmdet(with_dn_mask):
    ours, ref = make_pair()
    torch.manual_seed(1)
    branches = reg_branches(3)
    mask, ratios = padded_mask_and_ratios()
    # the denoising mask of 1 group of 2 targets (4 queries) in front of Q matching queries
    gen = CdnQueryGenerator(3, C, Q, group_cfg=dict(dynamic=False, num_groups=1))
    attn_mask = gen.attn_mask(2, 1, 'cpu') if with_dn_mask else None
    total = Q_DN + Q if with_dn_mask else Q
    g = torch.Generator().manual_seed(2)
    f64 = dict(generator=g, dtype=torch.float64)
    boxes = torch.rand(2, total, 4, **f64) * 0.6 + 0.2
    args = dict(
        query=torch.randn(2, total, C, **f64),
        value=torch.randn(2, N, C, **f64),
        key_padding_mask=mask,
        self_attn_mask=attn_mask,
        spatial_shapes=SHAPES,
        level_start_index=START,
        valid_ratios=ratios,
        reg_branches=branches)
    b_ours, b_ref = boxes.clone().requires_grad_(), boxes.clone().requires_grad_()
    got = ours(**args, reference_points=b_ours)
    expected = ref(**args, reference_points=b_ref)
    assert got[0].shape == (3, 2, total, C) and got[1].shape == (4, 2, total, 4)
    for o, e in zip(got, expected):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-9)
    # look forward twice: the references keep their graph to the regression branches
    assert got[1].requires_grad
    for out in (got, expected):
        (out[0].square().sum() + out[1][1:].log().sum()).backward()
    torch.testing.assert_close(b_ours.grad, b_ref.grad, rtol=0, atol=1e-9)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-9, msg=name)
    # the denoising queries are invisible to the matching ones
    if with_dn_mask:
        query = args['query'].clone()
        query[:, :Q_DN] += 1.0
        moved = ours(**dict(args, query=query), reference_points=boxes)
        torch.testing.assert_close(moved[0][:, :, Q_DN:], got[0][:, :, Q_DN:].detach())


def test_last_layer_only_and_registry():
    ours, ref = make_pair(seed=3, return_intermediate=False)
    mask, ratios = padded_mask_and_ratios()
    g = torch.Generator().manual_seed(4)
    args = dict(
        query=torch.randn(2, Q, C, generator=g, dtype=torch.float64),
        value=torch.randn(2, N, C, generator=g, dtype=torch.float64),
        key_padding_mask=mask,
        self_attn_mask=None,
        reference_points=torch.rand(2, Q, 4, generator=g, dtype=torch.float64) * 0.5 + 0.2,
        spatial_shapes=SHAPES,
        level_start_index=START,
        valid_ratios=ratios,
        reg_branches=reg_branches(3))
    for o, e in zip(ours(**args), ref(**args)):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-9)
    built = MODELS.build(dict(type='DinoTransformerDecoder', **DEC))
    assert type(built) is DinoTransformerDecoder
    with pytest.raises(ValueError, match=r'\[B, Q, 4\]'):
        ours(**dict(args, reference_points=args['reference_points'][..., :2]))


def test_narrow_decoder_runs():
    """Widths other than 256 work (mmdet's is fixed to 256 by its box encoding)."""
    cfg = dict(
        DEC,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=64, num_heads=4),
            cross_attn_cfg=dict(embed_dims=64, num_heads=4, num_levels=LEVELS, num_points=2),
            ffn_cfg=dict(embed_dims=64, feedforward_channels=64)))
    dec = DinoTransformerDecoder(**cfg)
    hidden, refs = dec(
        query=torch.randn(1, Q, 64),
        value=torch.randn(1, N, 64),
        key_padding_mask=None,
        self_attn_mask=None,
        reference_points=torch.rand(1, Q, 4),
        spatial_shapes=SHAPES,
        level_start_index=START,
        valid_ratios=torch.ones(1, LEVELS, 2),
        reg_branches=None)
    assert hidden.shape == (3, 1, Q, 64) and refs.shape == (4, 1, Q, 4)
