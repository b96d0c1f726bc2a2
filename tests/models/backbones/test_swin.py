"""``mmext.SwinTransformer`` against mmpretrain's ``SwinTransformer`` (1.2.0) and timm's (1.0).

Parity tests give both models the same random weights (mmpretrain: same keys, loaded strictly;
timm: through ``tools/model_converters/swin_to_mmext.py``) and compare every stage output and
the gradients of the input and of every parameter (atol 1e-5).  Configs are small (reduced
depth/width) except where the tiny arch itself is the point.
"""
import copy
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import SwinTransformer as PretrainSwin

from mmext.models.backbones import SwinTransformer, swin_blocks
from mmext.registry import MODELS

ROOT = Path(__file__).resolve().parents[3]
SMALL = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
ATOL = 1e-5


def converter():
    spec = importlib.util.spec_from_file_location('swin_to_mmext',
                                                  ROOT / 'tools/model_converters/swin_to_mmext.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (bias tables and biases are zero after construction)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def pretrain_pair(**kw):
    kw.setdefault('drop_path_rate', 0.)
    ref = PretrainSwin(**kw)
    randomize(ref)
    ours = SwinTransformer(**kw)
    ours.load_state_dict(ref.state_dict(), strict=True)  # identical key layout
    return ours, ref


def run(model, x, weights, grad=True):
    """Forward, then backward of a fixed random projection of every output."""
    if not grad:
        return model(x), None, None
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    outs = model(x)
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return outs, x.grad, grads


def assert_parity(ours, ref, size, batch=2, seed=1, ref_grad_map=None, ref_outs=None):
    """float32 outputs to 1e-5; then outputs and all gradients again in float64.

    Gradients are compared in float64 because a float32 weight gradient (a sum over every
    token) carries rounding of ~1e-6 of its magnitude in *both* implementations: e.g. 2e-4 on a
    patch-embedding gradient of size 271, each side as far from the float64 value as from the
    other.  In float64 the two agree to ~1e-12, which is the actual parity statement.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=gen)
    ref_run = run if ref_outs is None else ref_outs
    ours.train()
    ref.train()
    with torch.no_grad():
        out_o32 = ours(x)
    weights = [torch.randn(o.shape, generator=gen) for o in out_o32]
    with torch.no_grad():
        out_r32 = ref_run(ref, x, weights, grad=False)[0]
    assert len(out_o32) == len(out_r32)
    for a, b in zip(out_o32, out_r32):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    ours.double()
    ref.double()
    try:
        out_o, gx_o, g_o = run(ours, x.double(), [w.double() for w in weights])
        out_r, gx_r, g_r = ref_run(ref, x.double(), [w.double() for w in weights])
    finally:
        ours.float()
        ref.float()
    for a, b in zip(out_o, out_r):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    torch.testing.assert_close(gx_o, gx_r, atol=ATOL, rtol=0)
    if ref_grad_map is not None:
        g_r = ref_grad_map(g_r)
    assert set(g_o) == set(g_r) and len(g_o) == len(list(ours.parameters()))
    for name in g_o:
        torch.testing.assert_close(
            g_o[name], g_r[name], atol=ATOL, rtol=0, msg=lambda m, n=name: f'{n}: {m}')
    return out_o32


# ---------------------------------------------------------------- construction and settings


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large', 't', 'L'])
def test_arch_settings_match_mmpretrain(arch):
    with torch.device('meta'):  # no memory, even for Swin-L
        ours = SwinTransformer(arch=arch, out_indices=(0, 1, 2, 3))
    ref = PretrainSwin.arch_zoo[arch.lower()]
    assert (ours.embed_dims, ours.depths,
            ours.num_heads) == (ref['embed_dims'], list(ref['depths']), list(ref['num_heads']))
    assert ours.out_channels == [ours.embed_dims * 2**i for i in range(4)]
    assert len(ours.stages) == 4 and [len(s.blocks) for s in ours.stages] == ours.depths


def test_tiny_state_dict_layout_equals_mmpretrain():
    ours = SwinTransformer(arch='tiny', out_indices=(1, 2, 3))
    ref = PretrainSwin(arch='tiny', out_indices=(1, 2, 3))
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}


def test_explicit_settings_equal_arch_dict():
    a = SwinTransformer(**SMALL)
    b = SwinTransformer(arch=dict(SMALL))
    assert (a.embed_dims, a.depths, a.num_heads) == (b.embed_dims, b.depths, b.num_heads)
    assert a.out_channels == [256]


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='huge'), 'unknown SwinTransformer arch'),
    (dict(arch='tiny', embed_dims=96), 'either arch'),
    (dict(embed_dims=96, depths=[2, 2]), 'missing'),
    (dict(arch=dict(embed_dims=32, depths=[2, 2], num_heads=[1])), 'same'),
    (dict(arch=dict(embed_dims=30, depths=[2], num_heads=[4])), 'not divisible'),
    (dict(arch=SMALL, out_indices=(4, )), 'out_indices'),
    (dict(arch=SMALL, frozen_stages=4), 'frozen_stages'),
])
def test_bad_settings_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SwinTransformer(**kwargs)


def test_bad_inputs_raise_clear_errors():
    model = SwinTransformer(arch=SMALL).eval()
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match='pad_small_map=True'):
        model(torch.zeros(1, 3, 64, 64))  # last stage 2x2 < window 7
    padded = SwinTransformer(arch=SMALL, pad_small_map=True).eval()
    assert padded(torch.zeros(1, 3, 64, 64))[0].shape == (1, 256, 2, 2)


def test_registry_builds_from_mmext_and_toolbox_scopes():
    with DefaultScope.overwrite_default_scope('mmext'):
        a = MODELS.build(dict(type='SwinTransformer', arch=SMALL))
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        b = PRETRAIN_MODELS.build(dict(type='mmext.SwinTransformer', arch=SMALL))
    assert type(a) is SwinTransformer and type(b) is SwinTransformer


def test_default_init_follows_the_official_code():
    model = SwinTransformer(arch=SMALL)
    model.init_weights()
    tables = [
        m.relative_position_bias_table for m in model.modules()
        if isinstance(m, swin_blocks.WindowMSA)
    ]
    assert all(0.015 < t.std() < 0.025 for t in tables)  # mean of few values: loose bounds
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert 0.015 < m.weight.std() < 0.025 and (m.bias is None or not m.bias.any())
        if isinstance(m, nn.LayerNorm):
            assert (m.weight == 1).all() and not m.bias.any()


def test_relative_position_index_matches_the_paper_formula():
    ref = PretrainSwin(arch=SMALL, window_size=5).stages[0].blocks[0].attn.w_msa
    torch.testing.assert_close(
        swin_blocks.relative_position_index((5, 5)), ref.relative_position_index, atol=0, rtol=0)


def test_norm_cfg_reaches_every_norm():
    model = SwinTransformer(
        arch=SMALL, norm_cfg=dict(type='LN', eps=1e-6), out_indices=(0, 1, 2, 3))
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    # patch embed + 2 per block + 3 mergings + 4 outputs
    assert len(norms) == 1 + 2 * 8 + 3 + 4 and all(m.eps == 1e-6 for m in norms)

    class MyLN(nn.LayerNorm):  # stands in for a fused LayerNorm
        pass

    model = SwinTransformer(arch=SMALL, norm_cfg=dict(type=MyLN))
    assert sum(isinstance(m, MyLN) for m in model.modules()) == 1 + 2 * 8 + 3 + 1


def test_attention_goes_through_sdpa(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs['attn_mask'].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(swin_blocks.F, 'scaled_dot_product_attention', spy)
    SwinTransformer(arch=SMALL, pad_small_map=True).eval()(torch.zeros(2, 3, 56, 56))
    assert len(calls) == 8
    # unshifted blocks share one bias over all windows; shifted ones add the per-window mask,
    # with windows x heads as the head axis so it broadcasts over the 2 images (4 windows, 1 head)
    assert calls[0] == (1, 1, 49, 49) and calls[1] == (1, 4 * 1, 49, 49)


def test_layer_depth_numbering_matches_mmpretrain():
    ours, ref = pretrain_pair(
        arch=dict(embed_dims=32, depths=[2, 2, 4, 2], num_heads=[1, 2, 2, 4]), out_indices=(1, 3))
    names = [f'backbone.{n}' for n, _ in ours.named_parameters()] + ['head.fc.weight']
    for name in names:
        assert ours.get_layer_depth(name, 'backbone.') == ref.get_layer_depth(name, 'backbone.')
    assert ours.get_layer_depth('backbone.stages.2.blocks.3.norm1.weight', 'backbone.') == (8, 12)


# ---------------------------------------------------------------------- parity: mmpretrain


def test_parity_mmpretrain_tiny_small_input_all_stages():
    """Swin-T at 64x96 (maps below one window: padded and shifted, pad_small_map=True)."""
    ours, ref = pretrain_pair(arch='tiny', out_indices=(0, 1, 2, 3), pad_small_map=True)
    outs = assert_parity(ours, ref, (64, 96), batch=1)
    assert [tuple(o.shape[1:]) for o in outs] == [(96, 16, 24), (192, 8, 12), (384, 4, 6),
                                                  (768, 2, 3)]


@pytest.mark.parametrize(
    'size, pad_small_map, out_indices',
    [
        ((67, 101), True, (1, 3)),  # no side divisible by the window at any stage; odd merges
        ((230, 200), False, (0, 2, 3)),  # padding at stages 1-3, last stage exactly one window
        ((56, 56), True, (3, )),  # divisible: the plain path
    ])
def test_parity_mmpretrain_reduced_depth(size, pad_small_map, out_indices):
    ours, ref = pretrain_pair(arch=SMALL, out_indices=out_indices, pad_small_map=pad_small_map)
    outs = assert_parity(ours, ref, size)
    assert len(outs) == len(out_indices)
    assert [o.shape[1] for o in outs] == ours.out_channels


def test_parity_mmpretrain_window_and_mlp_options():
    kw = dict(arch=SMALL, window_size=4, pad_small_map=True, out_indices=(0, 3))
    ours, ref = pretrain_pair(**kw)
    assert_parity(ours, ref, (40, 52))


# ------------------------------------- mmpretrain's options: abs. position, outputs, stage_cfgs


@pytest.mark.parametrize('size', [(64, 64), (72, 100)])
def test_parity_mmpretrain_absolute_pos_embed(size):
    """``use_abs_pos_embed``: same key and shape as mmpretrain's, added after the patch
    embedding, bicubically resampled to a 18x25 grid when the input is not ``img_size``."""
    kw = dict(
        arch=SMALL, img_size=64, use_abs_pos_embed=True, pad_small_map=True, out_indices=(0, 3))
    ours, ref = pretrain_pair(**kw)
    assert ours.absolute_pos_embed.shape == ref.absolute_pos_embed.shape == (1, 16 * 16, 32)
    assert ours.patch_resolution == tuple(ref.patch_resolution)
    assert_parity(ours, ref, size)


def test_absolute_pos_embed_of_another_grid_is_resized_on_load_like_mmpretrain():
    src = SwinTransformer(arch=SMALL, img_size=64, use_abs_pos_embed=True, pad_small_map=True)
    randomize(src)
    sd = src.state_dict()  # a 16x16 grid, loaded into 20x20 models
    ours = SwinTransformer(arch=SMALL, img_size=80, use_abs_pos_embed=True, pad_small_map=True)
    ref = PretrainSwin(arch=SMALL, img_size=80, use_abs_pos_embed=True, pad_small_map=True)
    ours.load_state_dict(copy.deepcopy(sd))
    ref.load_state_dict(copy.deepcopy(sd))
    torch.testing.assert_close(ours.absolute_pos_embed, ref.absolute_pos_embed, atol=0, rtol=0)
    assert ours.absolute_pos_embed.shape == (1, 400, 32)


def test_absolute_pos_embed_init_and_freezing():
    torch.manual_seed(0)
    model = SwinTransformer(arch='tiny', use_abs_pos_embed=True)
    model.init_weights()
    assert abs(model.absolute_pos_embed.std().item() - 0.02) < 0.002
    assert model.get_layer_depth('absolute_pos_embed') == \
        PretrainSwin(arch='tiny', use_abs_pos_embed=True).get_layer_depth('absolute_pos_embed')
    frozen = SwinTransformer(arch=SMALL, use_abs_pos_embed=True, frozen_stages=0)
    assert not frozen.absolute_pos_embed.requires_grad  # frozen with the patch embedding
    assert 'absolute_pos_embed' not in SwinTransformer(arch=SMALL).state_dict()


@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3)])
def test_parity_mmpretrain_out_after_downsample(out_indices):
    kw = dict(arch=SMALL, out_after_downsample=True, pad_small_map=True, out_indices=out_indices)
    ours, ref = pretrain_pair(**kw)
    assert ours.num_features == list(ref.num_features) == [64, 128, 256, 256]
    outs = assert_parity(ours, ref, (64, 72))
    strides = {0: 8, 1: 16, 2: 32, 3: 32}  # outputs after the merging that ends the stage
    assert [tuple(o.shape[1:]) for o in outs] == [
        (ours.num_features[i], -(-64 // strides[i]), -(-72 // strides[i])) for i in out_indices
    ]


STAGE_CFGS = [
    # mmpretrain's 384-px fine-tuning configs: one block override for every stage
    dict(block_cfgs=dict(window_size=4)),
    # per stage: window, per-block lists, attention/FFN options, downsample norm
    [
        dict(window_size=3, block_cfgs=dict(attn_cfgs=dict(qkv_bias=False, qk_scale=0.3))),
        dict(
            block_cfgs=[dict(shift=False, ffn_ratio=2.),
                        dict(window_size=2)],
            downsample_cfg=dict(norm_cfg=dict(type='LN', eps=1e-6))),
        dict(pad_small_map=True, drop_paths=0.),
        dict(block_cfgs=dict(ffn_cfgs=dict(act_cfg=dict(type='ReLU'))))
    ],
]


@pytest.mark.parametrize('stage_cfgs', STAGE_CFGS)
def test_parity_mmpretrain_stage_cfgs(stage_cfgs):
    kw = dict(
        arch=SMALL,
        stage_cfgs=copy.deepcopy(stage_cfgs),
        pad_small_map=True,
        out_indices=(0, 1, 2, 3))
    ours, ref = pretrain_pair(**kw)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    assert_parity(ours, ref, (60, 44))


@pytest.mark.parametrize('stage_cfgs, match', [
    (dict(depth=3), r"unsupported key\(s\) \['depth'\].*from arch"),
    ([{}] * 3, '3 entries for 4 stages'),
    (dict(block_cfgs=dict(attn_cfgs=dict(window_msa='WindowMSAV2'))), 'attn_cfgs'),
    (dict(block_cfgs=[{}] * 5), '5 block_cfgs'),
    (dict(downsample_cfg=dict(kernel_size=3)), 'downsample_cfg'),
])
def test_unsupported_stage_cfgs_raise(stage_cfgs, match):
    with pytest.raises(ValueError, match=match):
        SwinTransformer(arch=SMALL, stage_cfgs=stage_cfgs)


def test_arch_zoo_and_arch_settings_follow_mmpretrain():
    """The arch table is the ``arch_zoo`` class attribute (as mmpretrain's and our ViT's) and the
    chosen settings are ``arch_settings``."""
    assert set(SwinTransformer.arch_zoo) == set(PretrainSwin.arch_zoo)
    for name, ref in PretrainSwin.arch_zoo.items():
        ours = SwinTransformer.arch_zoo[name]
        assert (ours['embed_dims'], list(ours['depths']), list(ours['num_heads'])) == \
            (ref['embed_dims'], list(ref['depths']), list(ref['num_heads']))
    with torch.device('meta'):
        model = SwinTransformer(arch='B')
        explicit = SwinTransformer(**SMALL)
    assert model.arch_settings == dict(
        embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])
    assert explicit.arch_settings == dict(SMALL)


def test_drop_path_schedule_equals_the_references():
    """One schedule helper: Swin's rates are mmpretrain's (float32 linspace), ViT's are
    mmpretrain's (float64 np.linspace), both as the float32 keep probabilities DropPath uses."""
    from mmpretrain.models.backbones import VisionTransformer as PretrainViT

    from mmext.models.backbones import VisionTransformer
    from mmext.models.backbones.drop_path import drop_path_rates

    def keep(p):
        return torch.tensor(1 - p, dtype=torch.float32).item()

    arch = dict(embed_dims=32, depths=[2, 2, 6, 2], num_heads=[1, 2, 2, 4])
    ours, ref = pretrain_pair(arch=arch, drop_path_rate=0.3)
    got = [b.attn.drop.drop_prob for s in ours.stages for b in s.blocks]
    want = [b.attn.drop.drop_prob for s in ref.stages for b in s.blocks]
    assert got == want == drop_path_rates(0.3, 12)
    vit_arch = dict(embed_dims=32, num_layers=7, num_heads=2, feedforward_channels=64)
    vit = VisionTransformer(arch=vit_arch, img_size=32, drop_path_rate=0.15)
    ref_vit = PretrainViT(arch=vit_arch, img_size=32, drop_path_rate=0.15)
    got = [keep(layer.ffn.dropout_layer.drop_prob) for layer in vit.layers[1:]]
    want = [keep(layer.ffn.dropout_layer.drop_prob) for layer in ref_vit.layers[1:]]
    assert got == want
    assert drop_path_rates(0.5, 1) == [0.0] and drop_path_rates(0.5, 0) == []


def test_loads_legacy_checkpoint_with_attn_mask_buffers():
    ours, ref = pretrain_pair(arch=SMALL)
    sd = ref.state_dict()
    sd['stages.0.blocks.1.attn.attn_mask'] = torch.zeros(64, 49, 49)  # mmpretrain < v3 keys
    fresh = SwinTransformer(arch=SMALL)
    fresh.load_state_dict(sd, strict=True)
    torch.testing.assert_close(fresh.state_dict(), ours.state_dict())


def test_bias_tables_of_another_window_are_resized_bicubically():
    src = SwinTransformer(arch=SMALL, window_size=7)
    randomize(src)
    dst = SwinTransformer(arch=SMALL, window_size=4, pad_small_map=True)
    dst.load_state_dict(src.state_dict(), strict=True)
    table = src.stages[1].blocks[0].attn.w_msa.relative_position_bias_table  # [169, 2]
    expected = torch.nn.functional.interpolate(
        table.detach().T.reshape(1, 2, 13, 13), size=(7, 7), mode='bicubic',
        align_corners=False).reshape(2, 49).T
    got = dst.stages[1].blocks[0].attn.w_msa
    torch.testing.assert_close(got.relative_position_bias_table.detach(), expected)
    torch.testing.assert_close(got.relative_position_index,
                               swin_blocks.relative_position_index((4, 4)))
    assert torch.equal(dst.stages[1].blocks[0].attn.w_msa.qkv.weight,
                       src.stages[1].blocks[0].attn.w_msa.qkv.weight)
    assert dst.eval()(torch.zeros(1, 3, 64, 64))[0].shape == (1, 256, 2, 2)


# ---------------------------------------------------------------------------- parity: timm


def timm_pair(img_size, window_size=7, strict_img_size=True, arch=SMALL):
    timm = pytest.importorskip('timm')
    ref = timm.create_model(
        'swin_tiny_patch4_window7_224',
        pretrained=False,
        img_size=img_size,
        window_size=window_size,
        embed_dim=arch['embed_dims'],
        depths=tuple(arch['depths']),
        num_heads=tuple(arch['num_heads']),
        drop_path_rate=0.,
        strict_img_size=strict_img_size)
    randomize(ref, seed=3)
    conv = converter()
    sd = conv.to_mmext(ref.state_dict(), layout='timm', prefix='')
    ours = SwinTransformer(arch=arch, window_size=window_size, drop_path_rate=0.)
    ours.load_state_dict({k: v for k, v in sd.items() if not k.startswith('head.')}, strict=True)

    def outs(model, x, weights, grad=True):  # timm's final normed map, NHWC -> NCHW
        if not grad:
            return (model.forward_features(x).permute(0, 3, 1, 2), ), None, None
        model.zero_grad()
        x = x.clone().requires_grad_(True)
        out = model.forward_features(x).permute(0, 3, 1, 2)
        (out * weights[0]).sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return (out, ), x.grad, grads

    def grad_map(grads):
        mapped = conv.to_mmext(grads, layout='timm', prefix='')
        return {k: v for k, v in mapped.items() if not k.endswith('relative_position_index')}

    return ours, ref, outs, grad_map


def test_parity_timm_reduced_depth_224():
    ours, ref, outs, grad_map = timm_pair(224)
    assert_parity(ours, ref, (224, 224), ref_grad_map=grad_map, ref_outs=outs)


def test_parity_timm_tiny_forward_224():
    timm = pytest.importorskip('timm')
    ref = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False).eval()
    randomize(ref, seed=4)
    sd = converter().to_mmext(ref.state_dict(), prefix='')
    ours = SwinTransformer(arch='tiny').eval()
    ours.load_state_dict({k: v for k, v in sd.items() if not k.startswith('head.')}, strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x)[0], ref.forward_features(x).permute(0, 3, 1, 2), atol=ATOL, rtol=0)


def test_parity_timm_dynamic_size():
    """timm with strict_img_size=False (masks built per input), window 4: at its build size 128
    (last map one window wide: no shift on either side) and, built for 256, at 384 (every map
    shifts).  Sizes whose maps are not window multiples differ by design: timm rolls before
    padding, the official detection code (and mmpretrain, mmdet, ours) pads before rolling."""
    ours, ref, outs, grad_map = timm_pair(128, window_size=4, strict_img_size=False)
    assert_parity(ours, ref, (128, 128), ref_grad_map=grad_map, ref_outs=outs)
    ours, ref, outs, grad_map = timm_pair(256, window_size=4, strict_img_size=False)
    assert_parity(ours, ref, (384, 384), batch=1, ref_grad_map=grad_map, ref_outs=outs)


# ------------------------------------------------------------------ with_cp and frozen_stages


def test_with_cp_gives_identical_gradients():
    kw = dict(arch=SMALL, out_indices=(1, 3), pad_small_map=True, drop_path_rate=0.3)
    plain = SwinTransformer(**kw)
    randomize(plain)
    cp = SwinTransformer(**kw, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 60, 44)
    weights = [torch.randn(2, 64, 8, 6), torch.randn(2, 256, 2, 2)]
    results = []
    for model in (plain, cp):
        model.train()
        torch.manual_seed(7)  # same stochastic-depth draws; checkpoint replays the RNG state
        results.append(run(model, x, weights))
    (o1, gx1, g1), (o2, gx2, g2) = results
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=0, rtol=0)
    assert set(g1) == set(g2)
    for name in g1:
        torch.testing.assert_close(
            g1[name], g2[name], atol=ATOL, rtol=0, msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('frozen_stages', [0, 2])
def test_frozen_stages_freeze_like_mmpretrain(frozen_stages):
    kw = dict(
        arch=SMALL,
        out_indices=(0, 1, 2, 3),
        frozen_stages=frozen_stages,
        drop_rate=0.5,
        pad_small_map=True)
    ours, ref = pretrain_pair(**kw)
    ours.train()
    ref.train()
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in ref.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(('patch_embed', 'norm')) or int(n.split('.')[1]) <= frozen_stages
        for n in frozen if n.startswith(('stages', 'patch_embed')))
    assert not ours.patch_embed.training and not ours.drop_after_pos.training
    assert all(not ours.stages[i].training for i in range(frozen_stages + 1))
    assert ours.stages[frozen_stages + 1].training
    # a training step moves only the trainable parameters
    before = {n: p.detach().clone() for n, p in ours.named_parameters()}
    opt = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=1.)
    sum(o.sum() for o in ours(torch.randn(1, 3, 64, 64))).backward()
    opt.step()
    for n, p in ours.named_parameters():
        assert torch.equal(p, before[n]) == (n in frozen), n


def test_frozen_stage_outputs_are_deterministic_in_train_mode():
    model = SwinTransformer(
        arch=SMALL,
        frozen_stages=3,
        drop_rate=0.5,
        drop_path_rate=0.5,
        pad_small_map=True,
        out_indices=(0, 3)).train()
    x = torch.randn(1, 3, 32, 32)
    a, b = model(x), model(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=0, rtol=0)


# ----------------------------------------------------------------------------- configs


def _build(path, **overrides):
    cfg = Config.fromfile(str(ROOT / path))
    cfg.merge_from_dict(overrides)
    assert cfg.custom_imports.imports == ['mmext']
    return cfg


def test_imagenet_classifier_config_builds():
    from mmpretrain.models import ImageClassifier
    cfg = _build('configs/swin/swin-tiny_16xb64_in1k.py')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert type(model) is ImageClassifier and type(model.backbone) is SwinTransformer
    assert model.backbone.depths == [2, 2, 6, 2]
    assert model.backbone.out_channels == [cfg.model.head.in_channels] == [768]
    assert cfg.train_dataloader.batch_size == 64


def test_imagenet_classifier_config_trains_one_step():
    """mmpretrain's ImageClassifier with Mixup/CutMix, its optimiser and data preprocessor."""
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample
    cfg = _build('configs/swin/swin-tiny_16xb64_in1k.py', **{
        'model.head.num_classes': 5,
        'data_preprocessor.num_classes': 5
    })
    cfg.model.data_preprocessor = cfg.data_preprocessor  # as the Runner does
    gen = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[
            torch.randint(0, 256, (3, 224, 224), generator=gen, dtype=torch.uint8) for _ in range(2)
        ],
        data_samples=[DataSample().set_gt_label(i) for i in (1, 3)])
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        before = [p.detach().clone() for p in model.backbone.parameters()]
        losses = model.train_step(data, optim)
    assert torch.isfinite(losses['loss'])
    assert all(not torch.equal(p, b) for p, b in zip(model.backbone.parameters(), before)
               if p.requires_grad and p.dim() > 1)


def _det_batch(size=64):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for boxes, labels in [([[4., 6., 30., 40.], [20., 20., 60., 50.]], [0, 2]), ([], [])]:
        inputs.append(torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8))
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1., 1.),
                batch_input_shape=(size, size)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes).reshape(-1, 4),
            labels=torch.tensor(labels, dtype=torch.long))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _train_step(cfg, registry):
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.build(cfg.model)
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        before = [p.detach().clone() for p in model.backbone.parameters()]
        losses = model.train_step(_det_batch(), optim)
    after = list(model.backbone.parameters())
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), 'backbone did not move'
    return model, losses


def test_fcos_swin_t_config_trains_one_step():
    from mmext.models.dense_heads import FCOSHead
    cfg = _build('configs/swin/fcos_swin-t-p4-w7_fpn_1x_coco.py', **{
        'model.backbone.init_cfg': None,
        'model.bbox_head.num_classes': 3
    })
    model, losses = _train_step(cfg, MODELS)
    assert type(model.backbone) is SwinTransformer and type(model.bbox_head) is FCOSHead
    assert model.backbone.out_channels == [192, 384, 768] == list(cfg.model.neck.in_channels)
    assert {'loss_cls', 'loss_bbox', 'loss_centerness'} <= set(losses)


def test_mmdet_project_config_uses_mmext_swin():
    from mmdet.registry import MODELS as DET_MODELS
    cfg = _build('projects/mmdet/retinanet_swin-t-p4-w7_fpn_1x_coco_mmext.py', **{
        'model.backbone.init_cfg': None,
        'model.bbox_head.num_classes': 3
    })
    assert cfg.default_scope == 'mmdet'
    model, losses = _train_step(cfg, DET_MODELS)
    assert type(model.backbone) is SwinTransformer
    assert {'loss_cls', 'loss_bbox'} <= set(losses)


@pytest.mark.cuda
def test_parity_mmpretrain_on_gpu():
    """On a GPU SDPA may pick a fused kernel; outputs still match the reference."""
    ours, ref = pretrain_pair(arch=SMALL, out_indices=(0, 3), pad_small_map=True)
    ours, ref = ours.cuda().eval(), ref.cuda()
    ref.eval()
    x = torch.randn(2, 3, 67, 101, device='cuda')
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
