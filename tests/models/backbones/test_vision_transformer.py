"""mmext.VisionTransformer: parity with mmpretrain's and timm's ViT (same weights, forward and
gradients), position-embedding resampling, Pretrained loading, freezing and argument checks."""
import copy
import logging
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from mmext.models.backbones.vision_transformer import VisionTransformer, resize_pos_embed
from mmext.registry import MODELS

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / 'tools' / 'model_converters'))
from vit_timm_to_mmext import convert_mmext_to_timm, convert_timm_to_mmext  # noqa: E402

ARCH = dict(embed_dims=48, num_layers=3, num_heads=4, feedforward_channels=96)


@pytest.fixture(autouse=True)
def quiet_logger():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # mmpretrain's init_weights logs every tensor
    yield
    logger.setLevel(level)


def randomize(model: nn.Module, seed: int) -> None:
    """Random values everywhere (also norms and zero-initialised tokens) so nothing hides."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def mmpretrain_vit(**kwargs):
    from mmpretrain.models.backbones import VisionTransformer as RefViT
    kwargs.setdefault('arch', copy.deepcopy(ARCH))
    return RefViT(**kwargs)


def compare_outputs_and_grads(ref, ours, ref_names, x, atol=1e-5):
    """Same input through both; same random cotangent; compare outputs and every gradient.

    ``ref_names`` maps each of our parameter names to the reference's."""
    x_ref = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    out_ref, out_ours = ref(x_ref), ours(x_ours)
    if isinstance(out_ref, torch.Tensor):
        out_ref, out_ours = (out_ref, ), out_ours[-1:]
    assert len(out_ref) == len(out_ours)
    gen = torch.Generator().manual_seed(1)
    loss_ref = loss_ours = 0
    for a, b in zip(out_ref, out_ours):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=atol, rtol=0)
        weight = torch.randn(a.shape, generator=gen).to(a)
        loss_ref = loss_ref + (a * weight).sum()
        loss_ours = loss_ours + (b * weight).sum()
    loss_ref.backward()
    loss_ours.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=atol, rtol=0)
    ref_params = dict(ref.named_parameters())
    checked = 0
    for name, p in ours.named_parameters():
        q = ref_params[ref_names(name)]
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        torch.testing.assert_close(p.grad, q.grad, atol=atol, rtol=0, msg=name)
        checked += 1
    assert checked > 10


MMPRETRAIN_CASES = [
    dict(out_type='cls_token'),
    dict(out_type='featmap', out_indices=[0, 1, 2]),
    dict(out_type='avg_featmap', out_indices=[-1, 1]),
    dict(out_type='raw', final_norm=False),
    dict(out_type='featmap', with_cls_token=False, patch_size=6),
    dict(out_type='cls_token', pre_norm=True, qkv_bias=False),
    dict(out_type='raw', drop_rate=0.1, drop_path_rate=0.2),  # eval mode: both off
]


@pytest.mark.parametrize('cfg', MMPRETRAIN_CASES)
@pytest.mark.parametrize('size', [(32, 32), (48, 40)])
def test_parity_with_mmpretrain(cfg, size):
    cfg = dict(dict(img_size=32, patch_size=8), **cfg)
    ref = mmpretrain_vit(**copy.deepcopy(cfg))
    randomize(ref, 0)
    ours = VisionTransformer(arch=ARCH, **cfg)
    assert set(ours.state_dict()) == set(ref.state_dict())  # mmpretrain keys load unchanged
    ours.load_state_dict(ref.state_dict())
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    compare_outputs_and_grads(ref, ours, lambda n: n, x)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_parity_with_mmpretrain_on_cuda(dtype):
    """On GPU, F.scaled_dot_product_attention picks fused kernels (flash for fp16): same
    kernels on both sides, so the outputs and gradients still agree."""
    cfg = dict(img_size=32, patch_size=8, out_type='featmap', out_indices=[0, -1])
    ref = mmpretrain_vit(**copy.deepcopy(cfg))
    randomize(ref, 0)
    ours = VisionTransformer(arch=ARCH, **cfg)
    ours.load_state_dict(ref.state_dict())
    ref.to('cuda', dtype).eval()
    ours.to('cuda', dtype).eval()
    x = torch.randn(4, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    atol = 1e-5 if dtype == torch.float32 else 2e-3
    compare_outputs_and_grads(ref, ours, lambda n: n, x.to('cuda', dtype), atol=atol)


def timm_vit(global_pool='token', **kwargs):
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    return TimmViT(
        img_size=32,
        patch_size=8,
        in_chans=3,
        num_classes=0,
        global_pool=global_pool,
        embed_dim=ARCH['embed_dims'],
        depth=ARCH['num_layers'],
        num_heads=ARCH['num_heads'],
        mlp_ratio=ARCH['feedforward_channels'] / ARCH['embed_dims'],
        dynamic_img_size=True,
        **kwargs)


class TimmFeatures(nn.Module):
    """timm's ViT with the output of ours: all tokens, the class token, or the pooled head."""

    def __init__(self, model, mode):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, x):
        if self.mode == 'raw':
            return self.model.forward_features(x)
        return self.model.forward_head(self.model.forward_features(x))


@pytest.mark.parametrize('size', [(32, 32), (48, 64), (24, 16)])  # same, up, down
@pytest.mark.parametrize('mode', ['cls_token', 'raw', 'avg_featmap'])
def test_parity_with_timm(mode, size):
    pool = 'avg' if mode == 'avg_featmap' else 'token'
    timm_model = timm_vit(global_pool=pool)
    randomize(timm_model, 3)
    # timm pools the un-normed tokens and norms after (fc_norm): our final_norm=False + ln2
    ours = VisionTransformer(
        arch=ARCH,
        img_size=32,
        patch_size=8,
        out_type=mode,
        final_norm=mode != 'avg_featmap',
        interpolate_antialias=True)
    converted = convert_timm_to_mmext(timm_model.state_dict())
    assert set(converted) == set(ours.state_dict())
    ours.load_state_dict(converted)
    back = convert_mmext_to_timm(converted)
    assert set(back) == set(timm_model.state_dict())
    ref = TimmFeatures(timm_model, mode).eval()
    ours.eval()
    to_timm = {k: v for k, v in zip(converted, timm_model.state_dict())}
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(4))
    compare_outputs_and_grads(ref, ours, lambda n: 'model.' + to_timm[n], x)


def test_pretrained_init_cfg_loads_converted_file(tmp_path):
    timm_model = timm_vit()
    randomize(timm_model, 7)
    ckpt = tmp_path / 'vit_mmext.pth'
    torch.save(dict(state_dict=convert_timm_to_mmext(timm_model.state_dict())), ckpt)
    # a different input size: the 4x4 grid of the file is resampled to 6x6 on load
    cfg = dict(
        type='VisionTransformer',
        arch=ARCH,
        img_size=48,
        patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    ours = MODELS.build(cfg)
    ours.init_weights()
    ref = mmpretrain_vit(
        img_size=48, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    ref.init_weights()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, atol=0, rtol=0, msg=k)
    assert ours.pos_embed.shape[1] == 1 + 36
    x = torch.randn(1, 3, 48, 48)
    ref.eval()  # mmpretrain's train() returns None: no chaining
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x)[0], ref(x)[0], atol=1e-5, rtol=0)
        # and the weights are the file's: same output as timm at the file's own size
        small = VisionTransformer(
            arch=ARCH,
            img_size=32,
            patch_size=8,
            init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
        small.init_weights()
        y = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(small.eval()(y)[0], timm_model.eval()(y), atol=1e-5, rtol=0)


def test_resize_pos_embed_matches_mmpretrain():
    from mmpretrain.models.utils import resize_pos_embed as ref_resize
    pos = torch.randn(1, 1 + 4 * 5, 8)
    torch.testing.assert_close(
        resize_pos_embed(pos, (4, 5), (7, 3)), ref_resize(pos, (4, 5), (7, 3)), atol=0, rtol=0)
    assert resize_pos_embed(pos, (4, 5), (4, 5)) is pos
    with pytest.raises(ValueError, match='4x4 grid'):
        resize_pos_embed(pos, (4, 4), (2, 2))


def test_arch_settings_and_patch_sizes():
    expected = dict(tiny=(192, 12, 3), small=(384, 12, 6), base=(768, 12, 12), large=(1024, 24, 16))
    for arch, (dims, layers, heads) in expected.items():
        s = VisionTransformer.arch_zoo[arch]
        assert (s['embed_dims'], s['num_layers'], s['num_heads']) == (dims, layers, heads)
        assert s['feedforward_channels'] == 4 * dims
    model = VisionTransformer(arch='tiny', img_size=64, patch_size=32, out_type='featmap')
    out = model(torch.randn(1, 3, 64, 96))
    assert out[0].shape == (1, 192, 2, 3)
    # sides not divisible by the patch are padded at the bottom/right
    assert model(torch.randn(1, 3, 65, 64))[0].shape == (1, 192, 3, 2)


def test_frozen_stages():
    model = VisionTransformer(arch=ARCH, img_size=32, patch_size=8, frozen_stages=2, drop_rate=0.1)
    model.train()
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    for i, layer in enumerate(model.layers):
        assert all(p.requires_grad == (i >= 2) for p in layer.parameters())
        assert layer.training == (i >= 2)
    assert model.ln1.weight.requires_grad
    full = VisionTransformer(arch=ARCH, img_size=32, patch_size=8, frozen_stages=3)
    assert not any(p.requires_grad for p in full.parameters())


def test_drop_path_and_checkpointing_train_mode():
    torch.manual_seed(0)
    model = VisionTransformer(
        arch=ARCH, img_size=32, patch_size=8, drop_path_rate=0.5, with_cp=True)
    model.init_weights()
    x = torch.randn(4, 3, 32, 32)
    model.train()
    a, b = model(x)[0], model(x)[0]
    assert not torch.allclose(a, b)  # stochastic depth active in training
    (a.sum() + b.sum()).backward()
    assert model.layers[0].attn.qkv.weight.grad is not None
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])


def test_init_weights_reference_scheme():
    torch.manual_seed(0)
    model = VisionTransformer(arch='tiny', img_size=32, patch_size=4)
    model.init_weights()
    qkv = model.layers[0].attn.qkv
    assert abs(qkv.weight.std().item() - 0.02) < 0.003 and not qkv.bias.any()
    assert torch.equal(model.ln1.weight, torch.ones(192))
    assert abs(model.pos_embed.std().item() - 0.02) < 0.003
    assert model.cls_token.abs().max() < 1e-4


def test_norm_cfg_accepts_registered_norm():

    class ScaledLN(nn.LayerNorm):
        pass

    MODELS.register_module(name='_TestScaledLN', module=ScaledLN, force=True)
    try:
        model = VisionTransformer(
            arch=ARCH,
            img_size=32,
            patch_size=8,
            norm_cfg=dict(type='mmext._TestScaledLN', eps=1e-5))
        assert isinstance(model.layers[0].ln1, ScaledLN) and model.ln1.eps == 1e-5
        assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, ARCH['embed_dims'])
    finally:
        MODELS._module_dict.pop('_TestScaledLN')


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='gigantic'), 'arch'),
    (dict(arch=dict(embed_dims=10)), 'arch'),
    (dict(arch=dict(ARCH, num_heads=5)), 'divisible'),
    (dict(out_type='tokens'), 'out_type'),
    (dict(out_type='cls_token', with_cls_token=False), 'with_cls_token'),
    (dict(out_indices=[3]), 'out_indices'),
    (dict(frozen_stages=4), 'frozen_stages'),
    (dict(patch_size=0), 'patch_size'),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    kwargs = dict(dict(arch=ARCH, img_size=32, patch_size=8), **kwargs)
    with pytest.raises(ValueError, match=match):
        VisionTransformer(**kwargs)


@pytest.mark.parametrize('out_indices', [{0: 1, 2: 3}, {1, 2}])
def test_out_indices_must_be_an_int_or_a_sequence(out_indices):
    """A dict (or a set) as out_indices is rejected, as mmpretrain's ViT rejects it, instead of
    being read through its keys."""
    kwargs = dict(arch=ARCH, img_size=32, patch_size=8)
    with pytest.raises(AssertionError):
        mmpretrain_vit(**kwargs, out_indices=out_indices)
    with pytest.raises(TypeError, match='out_indices must be an int or a sequence of ints'):
        VisionTransformer(**kwargs, out_indices=out_indices)
    with pytest.raises(TypeError, match='out_indices must be an int or a sequence of ints'):
        VisionTransformer(**kwargs, out_indices='0')
    with pytest.raises(TypeError, match='entries must be ints'):
        VisionTransformer(**kwargs, out_indices=[0, 1.0])
    assert VisionTransformer(**kwargs, out_indices=range(1, 3)).out_indices == (1, 2)


def test_bad_input_shape_names_the_problem():
    model = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\).*\(2, 1, 32, 32\)'):
        model(torch.randn(2, 1, 32, 32))


def _build_cfg_model(rel_path, scope):
    from mmengine.config import Config
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(str(ROOT / rel_path))
    assert cfg.custom_imports.imports == ['mmext']
    with DefaultScope.overwrite_default_scope(scope):
        registry = MODELS if scope == 'mmext' else ROOT_MODELS.children[scope]
        return cfg, registry.build(cfg.model)


@pytest.mark.parametrize('rel_path, scope', [
    ('configs/vit/vit-base-p16_64xb64_in1k.py', 'mmext'),
    ('projects/mmpretrain/vit-base-p16_64xb64_in1k_mmext.py', 'mmpretrain'),
])
def test_imagenet_configs_build_with_our_backbone(rel_path, scope):
    cfg, model = _build_cfg_model(rel_path, scope)
    assert type(model.backbone) is VisionTransformer
    assert model.backbone.embed_dims == 768 and model.backbone.num_layers == 12
    assert model.backbone.patch_size == (16, 16) and model.backbone.pos_embed.shape[1] == 197
    assert type(model).__name__ == 'ImageClassifier'
    model.eval()
    with torch.no_grad():  # a small input: the 14x14 position grid is resampled to 2x2
        logits = model(torch.randn(1, 3, 32, 32), mode='tensor')
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_layer_decay_finetune_config_builds_optimizer():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg, model = _build_cfg_model('configs/vit/vit-base-p16_in1k-384px_layer-decay-ft.py', 'mmext')
    assert model.backbone.pos_embed.shape[1] == 1 + 24 * 24
    with DefaultScope.overwrite_default_scope('mmext'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
    assert len(lrs) == 14  # 12 layers + embeddings + (final norm and head)
    assert lrs[-1] == pytest.approx(5e-4) and lrs[0] == pytest.approx(5e-4 * 0.65**13)


DEMO = ROOT / 'configs' / 'vit' / 'vit-tiny-p8_digits-32_demo.py'


def _train(work_dir, *options, timeout=600):
    import os
    import re
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(DEMO), '--work-dir', str(work_dir)]
    if options:
        cmd += ['--cfg-options', *options]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return [float(v) for v in re.findall(r'accuracy/top1: ([0-9.]+)', log)], log


def test_digits_demo_trains_through_the_runner(tmp_path):
    """The demo config, shrunk to 4 iterations on 64 images, through tools/train.py."""
    accs, log = _train(tmp_path, 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                       'train_dataloader.batch_size=16', 'train_dataloader.dataset.indices=64',
                       'val_dataloader.dataset.indices=32', 'default_hooks.logger.interval=1')
    assert 'Epoch(train) [1][4/4]' in log
    assert len(accs) == 1 and 0.0 <= accs[0] <= 100.0
    assert (tmp_path / 'epoch_1.pth').is_file()
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert 'backbone.layers.3.attn.qkv.weight' in ckpt['state_dict']


@pytest.mark.slow
def test_digits_demo_reaches_95_percent(tmp_path):
    """The full demo (README: a few minutes on 2 CPU cores): >= 95 % top-1 on the held-out split."""
    accs, _ = _train(tmp_path, timeout=3000)
    assert accs and accs[-1] >= 95.0, accs
