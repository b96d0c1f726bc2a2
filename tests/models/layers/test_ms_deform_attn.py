"""Parity of ``mmext.MultiScaleDeformableAttention`` with mmcv's (mmcv 2.1).

Same constructor arguments and initialisation (equal weights from the same seed), identical
state-dict keys, and equal outputs and gradients with 2-d reference points, 4-d reference boxes,
padded values and both tensor layouts.
"""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention as MMCVMSDA

from mmext.models.layers import MultiScaleDeformableAttention
from mmext.registry import MODELS

C, HEADS, LEVELS, POINTS = 32, 4, 3, 2
SHAPES = torch.tensor([[6, 7], [3, 4], [2, 2]])
START = torch.cat((SHAPES.new_zeros(1), SHAPES.prod(1).cumsum(0)[:-1]))
NV = int(SHAPES.prod(1).sum())


def make(seed=0, **kwargs):
    cfg = dict(embed_dims=C, num_heads=HEADS, num_levels=LEVELS, num_points=POINTS, dropout=0.0)
    cfg.update(kwargs)
    torch.manual_seed(seed)
    ref = MMCVMSDA(**cfg)
    torch.manual_seed(seed)
    ours = MultiScaleDeformableAttention(**cfg)
    return ref, ours


def inputs(ref_dims, batch_first=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, nq = 2, 5
    query = torch.randn(b, nq, C, generator=g)
    value = torch.randn(b, NV, C, generator=g)
    pos = torch.randn(b, nq, C, generator=g)
    refs = torch.rand(b, nq, LEVELS, ref_dims, generator=g)
    if ref_dims == 4:
        refs[..., 2:] = refs[..., 2:] * 0.5 + 0.05
    mask = torch.zeros(b, NV, dtype=torch.bool)
    mask[1, :6] = True  # the second image has padded cells on the finest level
    mask[1, 42:44] = True
    if not batch_first:
        query, value, pos = (t.transpose(0, 1).contiguous() for t in (query, value, pos))
    return dict(
        query=query,
        value=value,
        query_pos=pos,
        key_padding_mask=mask,
        reference_points=refs,
        spatial_shapes=SHAPES,
        level_start_index=START)


def test_same_init_and_state_dict_keys():
    ref, ours = make(seed=3, value_proj_ratio=0.5)
    assert list(ours.state_dict()) == list(ref.state_dict()) == [
        'sampling_offsets.weight', 'sampling_offsets.bias', 'attention_weights.weight',
        'attention_weights.bias', 'value_proj.weight', 'value_proj.bias', 'output_proj.weight',
        'output_proj.bias'
    ]
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    # the grid: head m points along 2πm/M, the k-th point k + 1 steps away, on every level
    bias = ours.sampling_offsets.bias.view(HEADS, LEVELS, POINTS, 2)
    torch.testing.assert_close(bias[1, 2, 1], torch.tensor([0., 2.]), atol=1e-6, rtol=0)


@pytest.mark.parametrize('ref_dims', [2, 4])
@pytest.mark.parametrize('batch_first', [True, False])
def test_outputs_and_gradients_match_mmcv(ref_dims, batch_first):
    ref, ours = make(batch_first=batch_first)
    with torch.no_grad():  # non-trivial offsets and weights
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    args = inputs(ref_dims, batch_first)
    args_ref = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in args.items()}
    args_ours = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in args.items()}
    expected, got = ref(**args_ref), ours(**args_ours)
    assert got.shape == args['query'].shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    weight = torch.randn_like(expected)
    (expected * weight).sum().backward()
    (got * weight).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5, msg=name)
    for k in ('query', 'value', 'query_pos', 'reference_points'):
        torch.testing.assert_close(args_ours[k].grad, args_ref[k].grad, rtol=1e-5, atol=1e-5, msg=k)


def test_padded_values_are_not_read_and_identity_is_added():
    _, ours = make(batch_first=True)
    ours.eval()
    args = inputs(2)
    base = ours(**args)
    changed = dict(args, value=args['value'].clone())
    changed['value'][1, :6] += 100.  # padded cells of image 1
    torch.testing.assert_close(ours(**changed), base)
    identity = torch.randn_like(args['query'])
    torch.testing.assert_close(
        ours(**args, identity=identity) - identity, base - args['query'], atol=1e-5, rtol=0)
    # level_start_index is implied by spatial_shapes
    torch.testing.assert_close(ours(**dict(args, level_start_index=None)), base)


def test_bad_inputs():
    with pytest.raises(ValueError, match='divisible'):
        MultiScaleDeformableAttention(embed_dims=30, num_heads=4)
    _, ours = make(batch_first=True)
    args = inputs(2)
    with pytest.raises(ValueError, match='2 .x, y. or 4'):
        ours(**dict(args, reference_points=args['reference_points'][..., :1]))
    with pytest.raises(ValueError, match='cover'):
        ours(**dict(args, spatial_shapes=SHAPES[:2], level_start_index=START[:2]))


def test_builds_from_registry():
    msda = MODELS.build(dict(type='MultiScaleDeformableAttention', embed_dims=C, num_heads=4))
    assert isinstance(msda, MultiScaleDeformableAttention)
    assert msda.num_levels == 4 and msda.num_points == 4 and not msda.batch_first
