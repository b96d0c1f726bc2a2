"""tools/model_converters/swin_to_mmext.py on round-tripped random weights.

Official checkpoints are not downloaded: an official-layout state dict is produced from random
weights and checked independently through timm's own loader for official checkpoints
(``timm.models.swin_transformer.checkpoint_filter_fn``), which must load it strictly and give
timm the same outputs as ours.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmext.models.backbones import SwinTransformer

timm = pytest.importorskip('timm')
from timm.models.swin_transformer import checkpoint_filter_fn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools/model_converters/swin_to_mmext.py'
ARCH = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
NUM_CLASSES = 5


def load_converter():
    spec = importlib.util.spec_from_file_location('swin_to_mmext', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conv = load_converter()


@pytest.fixture(scope='module')
def timm_model():
    model = timm.create_model(
        'swin_tiny_patch4_window7_224',
        pretrained=False,
        embed_dim=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        num_classes=NUM_CLASSES,
        drop_path_rate=0.).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen) + (p.dim() == 1) * 0.01)
    return model


def image():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def backbone_from(sd, prefix='backbone.'):
    model = SwinTransformer(arch=ARCH, drop_path_rate=0.).eval()
    model.load_state_dict({
        k[len(prefix):]: v
        for k, v in sd.items() if k.startswith(prefix)
    },
                          strict=True)
    return model


def cli(*args, monkeypatch, capsys):
    """Run the script's main() in-process (one test below runs it as a real subprocess)."""
    monkeypatch.setattr(sys, 'argv', [str(SCRIPT), *map(str, args)])
    conv.main()
    return capsys.readouterr().out


def assert_same(a, b):
    assert list(a) == list(b) or set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_timm_round_trip_is_exact(timm_model):
    sd = timm_model.state_dict()
    assert conv.detect_layout(sd) == 'timm'
    mm = conv.to_mmext(sd)
    assert_same(conv.from_mmext(mm, 'timm'), sd)
    with torch.no_grad():
        torch.testing.assert_close(
            backbone_from(mm)(image())[0],
            timm_model.forward_features(image()).permute(0, 3, 1, 2),
            atol=1e-5,
            rtol=0)


def test_official_layout_loads_in_timm_and_round_trips(timm_model):
    mm = conv.to_mmext(timm_model.state_dict())
    official = conv.from_mmext(mm, 'official')
    assert conv.detect_layout(official) == 'official'
    assert 'layers.0.downsample.reduction.weight' in official and 'head.weight' in official
    # timm's loader for official checkpoints reads our official layout back to its own
    fresh = timm.create_model(
        'swin_tiny_patch4_window7_224',
        pretrained=False,
        embed_dim=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        num_classes=NUM_CLASSES).eval()
    fresh.load_state_dict(checkpoint_filter_fn(dict(model=official), fresh), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(image()), timm_model(image()), atol=0, rtol=0)
    assert_same(conv.to_mmext(official), mm)


def test_patch_merging_reorder_matches_the_neighbour_order():
    """Official/timm concatenate x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]."""
    from mmext.models.backbones.swin_blocks import PatchMerging
    c = 3
    x = torch.randn(1, 4, 6, c)
    official = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                         -1).flatten(1, 2)
    merge = PatchMerging(c, 2 * c)
    w_official = torch.randn(2 * c, 4 * c)
    with torch.no_grad():
        merge.reduction.weight.copy_(conv.merge_to_mmext(w_official))
        merge.norm.weight.copy_(conv.merge_to_mmext(torch.arange(4. * c)))
    expected = torch.nn.functional.layer_norm(official, (4 * c, )) * torch.arange(4. * c)
    out, hw = merge(x.flatten(1, 2), (4, 6))
    assert hw == (2, 3)
    torch.testing.assert_close(out, expected @ w_official.T)


@pytest.mark.parametrize('layout, wrap, suffix', [('timm', False, '.safetensors'),
                                                  ('official', True, '.pth')])
def test_cli_output_loads_through_pretrained_init_cfg(timm_model, tmp_path, layout, wrap, suffix,
                                                      monkeypatch, capsys):
    src = conv.from_mmext(conv.to_mmext(timm_model.state_dict()), layout)
    path = tmp_path / f'src{suffix}'
    if suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in src.items()}, str(path))
    else:
        torch.save(dict(model=src) if wrap else src, path)
    out = tmp_path / 'mmext.pth'
    if layout == 'official':  # once as a real command line
        done = subprocess.run([sys.executable, str(SCRIPT),
                               str(path), str(out)],
                              capture_output=True,
                              text=True,
                              cwd=ROOT)
        assert done.returncode == 0, done.stderr
        stdout = done.stdout
    else:
        stdout = cli(path, out, monkeypatch=monkeypatch, capsys=capsys)
    assert f'{len(src)} keys' in stdout
    model = SwinTransformer(
        arch=ARCH,
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=str(out), prefix='backbone.'))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(image())[0],
            timm_model.forward_features(image()).permute(0, 3, 1, 2),
            atol=1e-5,
            rtol=0)


def test_converted_classifier_equals_timm_logits(timm_model):
    """backbone.* + head.fc.* load strictly into mmpretrain's ImageClassifier with our backbone
    (the layout of configs/swin/swin-tiny_16xb64_in1k.py)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='mmext.SwinTransformer', arch=ARCH, drop_path_rate=0.),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=256))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        clf = MODELS.build(cfg).eval()
    clf.load_state_dict(conv.to_mmext(timm_model.state_dict()), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(
            clf(image(), mode='tensor'), timm_model(image()), atol=1e-5, rtol=0)


def test_backbone_only_output(timm_model, tmp_path, monkeypatch, capsys):
    path = tmp_path / 'timm.pth'
    torch.save(timm_model.state_dict(), path)
    out = tmp_path / 'bb.pth'
    cli(path, out, '--backbone-only', monkeypatch=monkeypatch, capsys=capsys)
    sd = torch.load(out, weights_only=True)['state_dict']
    assert not any(k.startswith(('head.', 'backbone.')) for k in sd)
    SwinTransformer(arch=ARCH).load_state_dict(sd, strict=True)


def test_legacy_mmcls_final_norm_key_loads(timm_model):
    mm = conv.to_mmext(timm_model.state_dict(), prefix='')
    mm = {k.replace('norm3.', 'norm.'): v for k, v in mm.items() if not k.startswith('head.')}
    model = SwinTransformer(arch=ARCH)
    model.load_state_dict(mm, strict=True)
    assert torch.equal(model.norm3.weight, mm['norm.weight'])


@pytest.mark.parametrize('sd, match', [
    ({
        'stages.0.blocks.0.norm1.weight': torch.zeros(1)
    }, 'already has mmext'),
    ({
        'blocks.0.weight': torch.zeros(1)
    }, 'not an official or timm'),
])
def test_wrong_inputs_raise_clear_errors(sd, match):
    with pytest.raises(ValueError, match=match):
        conv.to_mmext(sd)


def test_unknown_key_is_named():
    with pytest.raises(KeyError, match='layers.0.blocks.0.gamma'):
        conv.to_mmext({
            'layers.0.blocks.0.gamma.weight': torch.zeros(1),
            'layers.0.blocks.0.norm1.weight': torch.zeros(1)
        })


def test_cli_reports_loading_and_saving(timm_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')  # report even these quick steps
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    path, out = tmp_path / 'timm.pth', tmp_path / 'mmext.pth'
    torch.save(timm_model.state_dict(), path)
    monkeypatch.setattr(sys, 'argv', [str(SCRIPT), str(path), str(out)])
    conv.main()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f'loading {path} (') and err[0].endswith(' MiB)...')
    assert err[1].startswith(f'loading {path} (') and ' MiB): done in ' in err[1]
    assert err[2] == f'saving {out}...' and err[3].startswith(f'saving {out}: done in ')
