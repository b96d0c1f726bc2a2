"""tools/model_converters/vit_*.py: timm and official (.npz) ViT weights <-> mmext keys, on
round-tripped random weights; the official converter is checked against timm's own .npz loader;
the command lines write files that mmext.VisionTransformer loads through init_cfg."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmext.models.backbones.vision_transformer import VisionTransformer

ROOT = Path(__file__).resolve().parents[2]
CONVERTERS = ROOT / 'tools' / 'model_converters'
sys.path.insert(0, str(CONVERTERS))
# isort: off  (the converters are scripts: importable only once their folder is on sys.path)
import vit_official_to_mmext  # noqa: E402
import vit_timm_to_mmext  # noqa: E402
from vit_official_to_mmext import convert_mmext_to_official, convert_official_to_mmext  # noqa: E402
from vit_timm_to_mmext import convert_mmext_to_timm, convert_timm_to_mmext  # noqa: E402

# isort: on

ARCH = dict(embed_dims=48, num_layers=3, num_heads=4, feedforward_channels=96)


def randomize(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def run_cli(module, monkeypatch, *args):
    """The converter's command line, in this process (no interpreter start-up)."""
    monkeypatch.setattr(sys, 'argv', [module.__file__, *map(str, args)])
    module.main()


def timm_vit(global_pool='token'):
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
        dynamic_img_size=True)


def test_timm_round_trip_and_classifier_keys():
    timm_model = timm_vit()
    timm_model.reset_classifier(7)
    randomize(timm_model, 5)
    sd = timm_model.state_dict()
    converted = convert_timm_to_mmext(sd, classifier=True)
    assert 'head.fc.weight' in converted and 'backbone.ln1.weight' in converted
    back = convert_mmext_to_timm(converted)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_timm_unsupported_parts_are_refused():
    sd = timm_vit().state_dict()
    sd['blocks.0.ls1.gamma'] = torch.ones(ARCH['embed_dims'])
    with pytest.raises(KeyError, match='blocks.0.ls1.gamma'):
        convert_timm_to_mmext(sd)


def test_official_npz_round_trip_against_timm_loader(tmp_path):
    """ours -> official .npz -> (timm's own npz loader | our converter): same model, same
    outputs; and the npz -> mmext -> npz round trip is exact."""
    ours = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    randomize(ours, 6)
    arrays = convert_mmext_to_official(ours.state_dict(), num_heads=ARCH['num_heads'])
    again = convert_official_to_mmext(arrays)
    for k, v in ours.state_dict().items():
        assert torch.equal(again[k], v), k
    back = convert_mmext_to_official(again, num_heads=ARCH['num_heads'])
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    path = tmp_path / 'vit.npz'
    np.savez(path, **arrays)
    from timm.models.vision_transformer import _load_weights
    timm_model = timm_vit()
    with torch.no_grad():
        _load_weights(timm_model, str(path))
    loaded = VisionTransformer(arch=ARCH, img_size=32, patch_size=8, interpolate_antialias=True)
    with np.load(path) as weights:
        loaded.load_state_dict(convert_official_to_mmext(dict(weights)))
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x)[0], timm_model.eval()(x), atol=1e-5, rtol=0)


def test_timm_cli_writes_a_pretrained_loadable_file(tmp_path, monkeypatch):
    timm_model = timm_vit()
    randomize(timm_model, 8)
    src, dst = tmp_path / 'timm.pth', tmp_path / 'mmext.pth'
    torch.save(timm_model.state_dict(), src)
    run_cli(vit_timm_to_mmext, monkeypatch, src, dst)
    ours = VisionTransformer(
        arch=ARCH, img_size=32, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    ours.init_weights()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x)[0], timm_model.eval()(x), atol=1e-5, rtol=0)


def test_official_cli_writes_a_pretrained_loadable_file(tmp_path, monkeypatch):
    model = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    randomize(model, 9)
    src, dst = tmp_path / 'vit.npz', tmp_path / 'mmext.pth'
    np.savez(src, **convert_mmext_to_official(model.state_dict(), ARCH['num_heads']))
    run_cli(vit_official_to_mmext, monkeypatch, src, dst)
    loaded = VisionTransformer(
        arch=ARCH, img_size=32, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    loaded.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_official_rejects_foreign_files():
    with pytest.raises(KeyError, match='embedding/kernel'):
        convert_official_to_mmext({'foo': np.zeros(3)})
